/*
 * N-API addon: sgemm(transA, transB, m, n, k, alpha, A, B, beta, C) over the system BLAS, row-major,
 * Float32Array arguments. Linux and other systems: OpenBLAS, whose setThreads/getThreads wrap
 * openblas_set_num_threads/openblas_get_num_threads. macOS (binding.gyp defines SELFALIGN_ACCELERATE): Apple's
 * Accelerate, which has no thread-count call, so setThreads only records the number for getThreads.
 * Shapes are checked on the TypeScript side (blas-kernel.ts); here only the array lengths are re-checked.
 */
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>
#ifdef SELFALIGN_ACCELERATE
#include <Accelerate/Accelerate.h>
static int accelerate_threads = 1;
static void blas_set_threads(int threads) { accelerate_threads = threads; }
static int blas_get_threads(void) { return accelerate_threads; }
#else
#include <cblas.h>
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
static void blas_set_threads(int threads) { openblas_set_num_threads(threads); }
static int blas_get_threads(void) { return openblas_get_num_threads(); }
#endif

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "blas addon: N-API call failed");   \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static int get_f32(napi_env env, napi_value value, float **data, size_t *length) {
  napi_typedarray_type type;
  void *raw;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &type, length, &raw, &buffer, &offset) != napi_ok ||
      type != napi_float32_array) {
    napi_throw_type_error(env, NULL, "blas addon: expected a Float32Array");
    return 0;
  }
  *data = (float *)raw;
  return 1;
}

static napi_value sgemm(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 10) {
    napi_throw_type_error(env, NULL, "blas addon: sgemm takes 10 arguments");
    return NULL;
  }
  bool transA, transB;
  int32_t m, n, k;
  double alpha, beta;
  CHECK(napi_get_value_bool(env, argv[0], &transA));
  CHECK(napi_get_value_bool(env, argv[1], &transB));
  CHECK(napi_get_value_int32(env, argv[2], &m));
  CHECK(napi_get_value_int32(env, argv[3], &n));
  CHECK(napi_get_value_int32(env, argv[4], &k));
  CHECK(napi_get_value_double(env, argv[5], &alpha));
  CHECK(napi_get_value_double(env, argv[8], &beta));
  float *a, *b, *c;
  size_t la, lb, lc;
  if (!get_f32(env, argv[6], &a, &la) || !get_f32(env, argv[7], &b, &lb) || !get_f32(env, argv[9], &c, &lc))
    return NULL;
  if (m < 0 || n < 0 || k < 0 || la < (size_t)m * k || lb < (size_t)k * n || lc < (size_t)m * n) {
    napi_throw_range_error(env, NULL, "blas addon: arrays too small for m, n, k");
    return NULL;
  }
  if (m == 0 || n == 0) return NULL;
  /* Leading dimensions of the stored (not the transposed) matrices; BLAS wants them >= 1. */
  int lda = transA ? m : k;
  int ldb = transB ? k : n;
  if (lda < 1) lda = 1;
  if (ldb < 1) ldb = 1;
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans, m, n, k,
              (float)alpha, a, lda, b, ldb, (float)beta, c, n);
  return NULL;
}

static napi_value set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t threads;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "blas addon: setThreads takes 1 argument");
    return NULL;
  }
  CHECK(napi_get_value_int32(env, argv[0], &threads));
  blas_set_threads(threads < 1 ? 1 : threads);
  return NULL;
}

static napi_value get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(napi_create_int32(env, blas_get_threads(), &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor properties[] = {
      {"sgemm", NULL, sgemm, NULL, NULL, NULL, napi_default, NULL},
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_default, NULL},
      {"getThreads", NULL, get_threads, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof(properties) / sizeof(properties[0]), properties));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
