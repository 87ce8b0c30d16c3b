/**
 * LoRA parameters: for each adapted projection W (out, in), y = W x + (alpha / r) · B (A dropout(x)),
 * A (r, in) initialised Kaiming-uniform like PEFT (bound 1/sqrt(in)), B (out, r) zeros, so training starts at the base.
 * Row-major A (r, in) and B (out, r) are byte-identical to PEFT's lora_A/lora_B and to GGUF's lora_a/lora_b.
 */
import { ConfigError } from "../../errors/index.js";
import { seededRandom } from "../../gguf/index.js";
import type { LlamaConfig } from "./model-config.js";
import type { Vec } from "./ops.js";

export const loraTargets = ["q", "k", "v", "o", "gate", "up", "down"] as const;
export type LoraTarget = (typeof loraTargets)[number];

/** GGUF base tensor stem of each target (`blk.N.<stem>.weight`). */
export const loraGgufNames = {
  q: "attn_q",
  k: "attn_k",
  v: "attn_v",
  o: "attn_output",
  gate: "ffn_gate",
  up: "ffn_up",
  down: "ffn_down",
} as const satisfies Record<LoraTarget, string>;

/** Hugging Face module path of each target inside `model.layers.N`. */
export const loraHfNames = {
  q: "self_attn.q_proj",
  k: "self_attn.k_proj",
  v: "self_attn.v_proj",
  o: "self_attn.o_proj",
  gate: "mlp.gate_proj",
  up: "mlp.up_proj",
  down: "mlp.down_proj",
} as const satisfies Record<LoraTarget, string>;

/** PEFT `target_modules` name of a target: the last component of its module path (`q_proj`). */
export function peftTargetModule(target: LoraTarget): string {
  return loraHfNames[target].slice(loraHfNames[target].indexOf(".") + 1);
}

/** The array as F32 (the f64 check path's LoRA arrays are converted; F32 ones are returned as they are). */
export function asFloat32(data: Vec): Float32Array {
  return data instanceof Float32Array ? data : Float32Array.from(data);
}

export interface LoraModule {
  layer: number;
  target: LoraTarget;
  nIn: number;
  nOut: number;
  /** (rank, nIn) row-major. */
  a: Vec;
  /** (nOut, rank) row-major. */
  b: Vec;
}

export interface LoraAdapter {
  rank: number;
  alpha: number;
  targets: LoraTarget[];
  /** Layer-major, targets in `loraTargets` order. */
  modules: LoraModule[];
}

export function loraShape(
  config: Pick<LlamaConfig, "dim" | "ffn" | "heads" | "kvHeads" | "headDim">,
  target: LoraTarget,
): { nIn: number; nOut: number } {
  const kv = config.kvHeads * config.headDim;
  // The attention width (heads × head size) need not be the model width (qwen3, gemma).
  const q = config.heads * config.headDim;
  switch (target) {
    case "q":
      return { nIn: config.dim, nOut: q };
    case "k":
    case "v":
      return { nIn: config.dim, nOut: kv };
    case "o":
      return { nIn: q, nOut: config.dim };
    case "gate":
    case "up":
      return { nIn: config.dim, nOut: config.ffn };
    case "down":
      return { nIn: config.ffn, nOut: config.dim };
  }
}

export function parseLoraTargets(targets: readonly string[]): LoraTarget[] {
  const aliases: Record<string, LoraTarget> = {
    q_proj: "q",
    k_proj: "k",
    v_proj: "v",
    o_proj: "o",
    gate_proj: "gate",
    up_proj: "up",
    down_proj: "down",
  };
  const out = new Set<LoraTarget>();
  for (const raw of targets) {
    const name = aliases[raw] ?? raw;
    if (!(loraTargets as readonly string[]).includes(name)) {
      throw new ConfigError(`unknown LoRA target "${raw}"; expected some of ${loraTargets.join(", ")}`, {
        field: "targets",
      });
    }
    out.add(name as LoraTarget);
  }
  if (out.size === 0) throw new ConfigError("at least one LoRA target is needed", { field: "targets" });
  return loraTargets.filter((t) => out.has(t));
}

export interface CreateLoraOptions {
  rank: number;
  alpha: number;
  targets: readonly LoraTarget[];
  seed: number;
  alloc: (n: number) => Vec;
}

/** Fresh adapter; throws ConfigError when the rank exceeds a projection's min(n_in, n_out). */
export function createLora(config: LlamaConfig, options: CreateLoraOptions): LoraAdapter {
  const { rank, alpha, seed, alloc } = options;
  const targets = loraTargets.filter((t) => options.targets.includes(t));
  if (!Number.isInteger(rank) || rank < 1) throw new ConfigError(`LoRA rank must be a positive integer, got ${rank}`);
  for (const target of targets) {
    const { nIn, nOut } = loraShape(config, target);
    if (rank > Math.min(nIn, nOut)) {
      throw new ConfigError(
        `LoRA rank ${rank} is larger than min(n_in, n_out) = ${Math.min(nIn, nOut)} of the ${target} projection (${nIn} -> ${nOut}); use --rank <= ${Math.min(nIn, nOut)}`,
        { field: "rank" },
      );
    }
  }
  const random = seededRandom(seed);
  const modules: LoraModule[] = [];
  for (let layer = 0; layer < config.layers; layer++) {
    for (const target of targets) {
      const { nIn, nOut } = loraShape(config, target);
      const a = alloc(rank * nIn);
      const bound = 1 / Math.sqrt(nIn);
      for (let i = 0; i < a.length; i++) a[i] = (2 * random() - 1) * bound;
      modules.push({ layer, target, nIn, nOut, a, b: alloc(nOut * rank) });
    }
  }
  return { rank, alpha, targets, modules };
}

/** Same structure, all zeros (gradients, Adam moments). */
export function zerosLike(adapter: LoraAdapter, alloc: (n: number) => Vec): LoraAdapter {
  return {
    ...adapter,
    modules: adapter.modules.map((m) => ({ ...m, a: alloc(m.a.length), b: alloc(m.b.length) })),
  };
}

/** Every parameter array, in a fixed order (A then B per module): what the optimizer and checkpoints walk. */
export function loraArrays(adapter: LoraAdapter): Vec[] {
  return adapter.modules.flatMap((m) => [m.a, m.b]);
}

export function loraScale(adapter: LoraAdapter): number {
  return adapter.alpha / adapter.rank;
}
