/**
 * What the embedded-engine benchmarks share: the ~19M-parameter LLaMA GGUF they run on (written to a temp folder
 * that is removed afterwards) and `--name <number>` flags. In bench/lib/ so `npm run bench` does not run it.
 */
import { access, mkdir, mkdtemp, rename, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readEnv } from "../../src/config/env.js";
import { resolveTinyModelOptions, type TinyModelOptions, writeTinyModel } from "../../src/gguf/index.js";

/** `--name <number>` from the command line, else `fallback`. */
export function numberFlag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
}

export interface BenchModel {
  path: string;
  parameterCount: number;
}

/** Write the benchmark model with 2-D weights stored as `dtype`, run `bench` on it, then delete it. */
export async function withBenchModel<T>(
  dtype: NonNullable<TinyModelOptions["dtype"]>,
  bench: (model: BenchModel) => Promise<T>,
): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "selfalign-bench-model-"));
  try {
    const path = join(dir, "m20.gguf");
    const { parameterCount } = await writeTinyModel(path, {
      layers: 6,
      dim: 512,
      heads: 8,
      kvHeads: 8,
      ffn: 1376,
      dtype,
      contextLength: 4096,
      seed: 1,
    });
    return await bench({ path, parameterCount });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Model shapes the speed benchmarks run at. "360m" is the quick-start model's (SmolLM2-360M: hidden 960, 32 layers,
 * 15 heads, 5 KV heads, FFN 2560, vocabulary 49152, tied embeddings) in Q8_0, so its cost per token is a real one;
 * "57m" is an 8-layer model of width 768 in F16 with the byte vocabulary.
 */
export const benchShapes = {
  "57m": { layers: 8, dim: 768, heads: 12, kvHeads: 12, ffn: 2048, dtype: "F16" },
  "360m": {
    layers: 32,
    dim: 960,
    heads: 15,
    kvHeads: 5,
    ffn: 2560,
    vocabSize: 49152,
    tiedEmbeddings: true,
    dtype: "Q8_0",
  },
} as const satisfies Record<string, TinyModelOptions>;
export type BenchShape = keyof typeof benchShapes;

/** `--shape a,b` from the command line (names of benchShapes), else `fallback`. */
export function shapeFlag(fallback: BenchShape[]): BenchShape[] {
  const at = process.argv.indexOf("--shape");
  if (at < 0) return fallback;
  const names = String(process.argv[at + 1]).split(",");
  for (const name of names)
    if (!(name in benchShapes))
      throw new Error(`--shape ${name}: expected one of ${Object.keys(benchShapes).join(", ")}`);
  return names as BenchShape[];
}

/**
 * The GGUF of a bench shape, written once (seed 1, context 4096) and kept under SELFALIGN_CACHE_DIR/bench-models:
 * the 360M model takes about a minute to write.
 */
export async function cachedBenchModel(shape: BenchShape): Promise<BenchModel> {
  const dir = join(readEnv().cacheDir, "bench-models");
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${shape}-v1.gguf`);
  const options: TinyModelOptions = { ...benchShapes[shape], contextLength: 4096, seed: 1 };
  const { parameterCount } = buildParameterCount(options);
  try {
    await access(path);
  } catch {
    const partial = `${path}.partial-${process.pid}`;
    await writeTinyModel(partial, options);
    await rename(partial, path);
  }
  return { path, parameterCount };
}

/** Parameter count of a shape without building its tensors. */
function buildParameterCount(options: TinyModelOptions): { parameterCount: number } {
  const o = resolveTinyModelOptions(options);
  const kvDim = (o.dim / o.heads) * o.kvHeads;
  const perLayer = 2 * o.dim + o.dim * o.dim * 2 + 2 * o.dim * kvDim + 3 * o.dim * o.ffn;
  const embeddings = o.dim * o.vocabSize * (o.tiedEmbeddings ? 1 : 2);
  return { parameterCount: embeddings + o.layers * perLayer + o.dim };
}
