// A persistent ggml threadpool for the llama.cpp contexts node-llama-cpp creates.
//
// node-llama-cpp attaches no threadpool to its contexts, so every llama_decode call with more than one thread creates
// and joins its worker threads (ggml's "disposable" pool): on a 2-core machine, decoding a few tokens with 2 threads
// was slower than with 1. This addon creates one pool with ggml's own ggml_threadpool_new and attaches it to a
// context with llama_attach_threadpool, as llama.cpp's own tools do (common_threadpools::init).
//
// It links against nothing: the functions are looked up in the llama.cpp libraries node-llama-cpp already loaded (never
// a second copy), and the context's llama_context pointer is read from node-llama-cpp's own AddonContext, whose
// header is compiled in, and is checked against the context's size and sequence count before it is used.
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "AddonContext.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <dlfcn.h>
#if defined(__APPLE__)
#include <mach-o/dyld.h>
#else
#include <link.h>
#endif

namespace {

struct Functions {
  decltype(&llama_attach_threadpool) attach = nullptr;
  decltype(&llama_detach_threadpool) detach = nullptr;
  decltype(&llama_n_ctx) nCtx = nullptr;
  decltype(&llama_n_seq_max) nSeqMax = nullptr;
  decltype(&ggml_backend_dev_by_type) devByType = nullptr;
  decltype(&ggml_backend_dev_backend_reg) devBackendReg = nullptr;
  decltype(&ggml_backend_reg_get_proc_address) procAddress = nullptr;
  decltype(&ggml_threadpool_params_init) paramsInit = nullptr;
  decltype(&ggml_threadpool_new) poolNew = nullptr;
  decltype(&ggml_threadpool_free) poolFree = nullptr;
  std::string error;
};

// The path of a loaded shared library whose file name starts with `prefix` (e.g. "libllama."), or "".
std::string loadedLibrary(const char* prefix) {
  std::string found;
#if defined(__APPLE__)
  for (uint32_t i = 0; i < _dyld_image_count() && found.empty(); i++) {
    const char* name = _dyld_get_image_name(i);
    const char* base = name ? strrchr(name, '/') : nullptr;
    if (base && strncmp(base + 1, prefix, strlen(prefix)) == 0) found = name;
  }
#else
  struct Search {
    const char* prefix;
    std::string* found;
  } search{prefix, &found};
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        const char* base = info->dlpi_name ? strrchr(info->dlpi_name, '/') : nullptr;
        if (base && strncmp(base + 1, s->prefix, strlen(s->prefix)) == 0) {
          *s->found = info->dlpi_name;
          return 1;
        }
        return 0;
      },
      &search);
#endif
  return found;
}

template <typename T>
bool lookUp(void* handle, const char* name, T& into, std::string& error) {
  into = reinterpret_cast<T>(dlsym(handle, name));
  if (!into) error = std::string("symbol ") + name + " not found";
  return into != nullptr;
}

const Functions& functions() {
  static Functions f = [] {
    Functions r;
    std::string llama = loadedLibrary("libllama.");
    std::string base = loadedLibrary("libggml-base.");
    std::string registry = loadedLibrary("libggml.");
    if (llama.empty() || base.empty() || registry.empty()) {
      r.error = "llama.cpp's libraries are not loaded (load a model with node-llama-cpp first)";
      return r;
    }
    // RTLD_NOLOAD: a handle to the copy already in the process, never a new one.
    void* l = dlopen(llama.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    void* b = dlopen(base.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    void* g = dlopen(registry.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (!l || !b || !g) {
      r.error = "cannot open the loaded llama.cpp libraries";
      return r;
    }
    if (!lookUp(l, "llama_attach_threadpool", r.attach, r.error) ||
        !lookUp(l, "llama_detach_threadpool", r.detach, r.error) || !lookUp(l, "llama_n_ctx", r.nCtx, r.error) ||
        !lookUp(l, "llama_n_seq_max", r.nSeqMax, r.error) ||
        !lookUp(g, "ggml_backend_dev_by_type", r.devByType, r.error) ||
        !lookUp(b, "ggml_backend_dev_backend_reg", r.devBackendReg, r.error) ||
        !lookUp(b, "ggml_backend_reg_get_proc_address", r.procAddress, r.error) ||
        !lookUp(b, "ggml_threadpool_params_init", r.paramsInit, r.error))
      return r;
    ggml_backend_dev_t cpu = r.devByType(GGML_BACKEND_DEVICE_TYPE_CPU);
    ggml_backend_reg_t reg = cpu ? r.devBackendReg(cpu) : nullptr;
    if (!reg) {
      r.error = "llama.cpp has no CPU backend loaded";
      return r;
    }
    r.poolNew = reinterpret_cast<decltype(r.poolNew)>(r.procAddress(reg, "ggml_threadpool_new"));
    r.poolFree = reinterpret_cast<decltype(r.poolFree)>(r.procAddress(reg, "ggml_threadpool_free"));
    if (!r.poolNew || !r.poolFree) r.error = "the CPU backend does not offer ggml_threadpool_new";
    return r;
  }();
  return f;
}

struct Attachment {
  // Keeps node-llama-cpp's context object (and so its AddonContext) alive while the pool is attached to it.
  napi_ref object;
  AddonContext* addon;
  llama_context* ctx;
};

struct Pool {
  ggml_threadpool_t pool = nullptr;
  std::vector<Attachment> attached;
};

// contextSize is llama_n_ctx's (what the native context's getContextSize() says), batchSize the batch it was made with.
AddonContext* contextOf(Napi::Env env, Napi::Value value, uint32_t contextSize, uint32_t sequences, uint32_t batchSize,
                        std::string& error) {
  void* wrapped = nullptr;
  if (!value.IsObject() || napi_unwrap(env, value, &wrapped) != napi_ok || !wrapped) {
    error = "not a node-llama-cpp native context";
    return nullptr;
  }
  auto* addon = static_cast<AddonContext*>(wrapped);
  const llama_context_params& params = addon->context_params;
  if (params.n_seq_max != sequences || params.n_batch != batchSize || params.n_ubatch != batchSize || !addon->ctx) {
    error = "the native context is not laid out as node-llama-cpp's AddonContext header says";
    return nullptr;
  }
  const Functions& f = functions();
  if (f.nCtx(addon->ctx) != contextSize || f.nSeqMax(addon->ctx) != sequences) {
    error = "the llama_context does not match the context's size and sequences";
    return nullptr;
  }
  return addon;
}

// createPool(threads, poll): a persistent threadpool of `threads` threads (the decode thread included); `poll` is ggml's
// polling level (0: idle workers sleep at once; 50, ggml's default: they spin a while for the next graph).
Napi::Value CreatePool(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Functions& f = functions();
  if (!f.error.empty()) {
    Napi::Error::New(env, f.error).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int threads = info[0].As<Napi::Number>().Int32Value();
  if (threads < 1 || threads > GGML_MAX_N_THREADS) {
    Napi::RangeError::New(env, "threads must be between 1 and GGML_MAX_N_THREADS").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  ggml_threadpool_params params;
  f.paramsInit(&params, threads);
  if (info.Length() > 1 && info[1].IsNumber()) params.poll = info[1].As<Napi::Number>().Uint32Value();
  auto* pool = new Pool{f.poolNew(&params), {}};
  if (!pool->pool) {
    delete pool;
    Napi::Error::New(env, "ggml_threadpool_new failed").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::External<Pool>::New(env, pool);
}

// attach(pool, nativeContext, contextSize, sequences, batchSize): decode that context's batches on the pool. Contexts
// sharing a pool must never decode at the same time.
Napi::Value Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* pool = info[0].As<Napi::External<Pool>>().Data();
  std::string error;
  AddonContext* addon = contextOf(env, info[1], info[2].As<Napi::Number>().Uint32Value(),
                                  info[3].As<Napi::Number>().Uint32Value(), info[4].As<Napi::Number>().Uint32Value(),
                                  error);
  if (!addon || !pool->pool) {
    Napi::Error::New(env, addon ? "the pool was released" : error).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  napi_ref object = nullptr;
  napi_create_reference(env, info[1], 1, &object);
  functions().attach(addon->ctx, pool->pool, pool->pool);
  pool->attached.push_back({object, addon, addon->ctx});
  return env.Undefined();
}

// release(pool): detach it from its contexts that are still alive, then stop and free its threads. Idempotent. Call it
// when no decode is running on the pool.
Napi::Value Release(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* pool = info[0].As<Napi::External<Pool>>().Data();
  const Functions& f = functions();
  for (Attachment& attachment : pool->attached) {
    {
      // A context node-llama-cpp disposed already has ctx == nullptr (and its llama_context freed).
      std::lock_guard<std::mutex> lock(attachment.addon->disposeMutex);
      if (attachment.addon->ctx == attachment.ctx) f.detach(attachment.ctx);
    }
    napi_delete_reference(env, attachment.object);
  }
  pool->attached.clear();
  if (pool->pool) f.poolFree(pool->pool);
  pool->pool = nullptr;
  return env.Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("createPool", Napi::Function::New(env, CreatePool));
  exports.Set("attach", Napi::Function::New(env, Attach));
  exports.Set("release", Napi::Function::New(env, Release));
  return exports;
}

}  // namespace

NODE_API_MODULE(threadpool, Init)
