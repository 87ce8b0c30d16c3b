/**
 * What the embedded-engine benchmarks share: the ~19M-parameter LLaMA GGUF they run on (written to a temp folder
 * that is removed afterwards) and `--name <number>` flags. In bench/lib/ so `npm run bench` does not run it.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type TinyModelOptions, writeTinyModel } from "../../src/gguf/index.js";

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
