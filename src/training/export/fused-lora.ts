/**
 * A trained adapter in the layout of the model's stored weights. phi3 stores q, k and v as one attn_qkv (HF
 * self_attn.qkv_proj) and gate and up as one ffn_up (mlp.gate_up_proj): the trainer adapts each projection with its
 * own rank-r LoRA, which is exactly one LoRA of rank g·r on the fused weight with A stacked and B block-diagonal
 * (g = the adapted members). llama.cpp scales each tensor by alpha / its own rank, so the fused B is multiplied by g
 * in the GGUF; PEFT gets the unscaled B with rank_pattern / alpha_pattern giving the same alpha / r.
 */
import { ConfigError } from "../../errors/index.js";
import {
  asFloat32,
  type LoraAdapter,
  type LoraTarget,
  loraGgufNames,
  loraHfNames,
  loraShape,
} from "../embedded/lora.js";
import type { LlamaConfig } from "../embedded/model-config.js";

export type FusedLayout = Pick<
  LlamaConfig,
  "fusedQkv" | "fusedGateUp" | "ropeMode" | "dim" | "ffn" | "heads" | "kvHeads" | "headDim"
>;

/** One LoRA as stored: on a GGUF tensor `blk.N.<stem>.weight` / HF module `model.layers.N.<hfName>`. */
export interface StoredLoraModule {
  layer: number;
  stem: string;
  hfName: string;
  nIn: number;
  nOut: number;
  rank: number;
  /** (rank, nIn) row-major. */
  a: Float32Array;
  /** (nOut, rank) row-major, unscaled. */
  b: Float32Array;
  /** Adapted projections fused into this one (1 when not fused). */
  members: number;
}

const fusedGroups = [
  { stem: "attn_qkv", hfName: "self_attn.qkv_proj", members: ["q", "k", "v"], flag: "fusedQkv" },
  { stem: "ffn_up", hfName: "mlp.gate_up_proj", members: ["gate", "up"], flag: "fusedGateUp" },
] as const satisfies ReadonlyArray<{
  stem: string;
  hfName: string;
  members: readonly LoraTarget[];
  flag: "fusedQkv" | "fusedGateUp";
}>;

/** Whether the model stores any projection fused. */
export function hasFusedProjections(layout: Pick<LlamaConfig, "fusedQkv" | "fusedGateUp"> | undefined): boolean {
  return layout !== undefined && (layout.fusedQkv || layout.fusedGateUp);
}

/** The adapter's modules as the model stores its weights, layer by layer (fused groups where the model fuses). */
export function storedLoraModules(adapter: LoraAdapter, layout?: FusedLayout): StoredLoraModule[] {
  const r = adapter.rank;
  const out: StoredLoraModule[] = [];
  const layers = [...new Set(adapter.modules.map((m) => m.layer))].sort((x, y) => x - y);
  if (hasFusedProjections(layout) && layout!.ropeMode === "normal")
    throw new ConfigError(
      "fused q/k/v weights with llama-style RoPE (permuted q/k rows) are not supported for adapter export",
    );
  for (const layer of layers) {
    const modules = adapter.modules.filter((m) => m.layer === layer);
    const done = new Set<LoraTarget>();
    for (const group of fusedGroups) {
      if (!layout?.[group.flag]) continue;
      const present = group.members.filter((t) => modules.some((m) => m.target === t));
      if (present.length === 0) continue;
      const sizes = group.members.map((t) => loraShape(layout, t).nOut);
      const nOut = sizes.reduce((sum, n) => sum + n, 0);
      const nIn = loraShape(layout, group.members[0]).nIn;
      const rank = present.length * r;
      const a = new Float32Array(rank * nIn);
      const b = new Float32Array(nOut * rank);
      present.forEach((target, slot) => {
        const m = modules.find((module) => module.target === target)!;
        a.set(asFloat32(m.a), slot * r * nIn);
        const offset = sizes.slice(0, group.members.indexOf(target as never)).reduce((sum, n) => sum + n, 0);
        const bm = asFloat32(m.b);
        for (let o = 0; o < m.nOut; o++)
          for (let c = 0; c < r; c++) b[(offset + o) * rank + slot * r + c] = bm[o * r + c]!;
        done.add(target);
      });
      out.push({ layer, stem: group.stem, hfName: group.hfName, nIn, nOut, rank, a, b, members: present.length });
    }
    for (const m of modules) {
      if (done.has(m.target)) continue;
      out.push({
        layer,
        stem: loraGgufNames[m.target],
        hfName: loraHfNames[m.target],
        nIn: m.nIn,
        nOut: m.nOut,
        rank: r,
        a: asFloat32(m.a),
        b: asFloat32(m.b),
        members: 1,
      });
    }
  }
  return out;
}

/** The refusal for reading a fused (phi3) adapter that is not block-diagonal (or a PEFT one) back into the trainer. */
export function fusedAdapterReadError(path: string, why = "from PEFT"): ConfigError {
  return new ConfigError(
    `this model stores q/k/v and gate/up fused (phi3): an adapter on the fused weights can be read back only as selfalign writes it (block-diagonal, GGUF), not ${why}; train from the base model instead`,
    { path },
  );
}

/**
 * The per-projection LoRAs of a fused GGUF module (`stem` attn_qkv or ffn_up) as storedLoraModules wrote it: B is
 * block-diagonal over the members' rows in blocks of `rank` columns (and scaled by the member count). Undefined when
 * B is not of that form (another tool's adapter), which the caller refuses.
 */
export function unfuseStoredModule(
  stem: string,
  layer: number,
  a: Float32Array,
  b: Float32Array,
  fusedRank: number,
  rank: number,
  layout: FusedLayout,
):
  | Array<{ layer: number; target: LoraTarget; nIn: number; nOut: number; a: Float32Array; b: Float32Array }>
  | undefined {
  const group = fusedGroups.find((g) => g.stem === stem);
  if (!group || fusedRank % rank !== 0) return undefined;
  const slots = fusedRank / rank;
  const sizes = group.members.map((t) => loraShape(layout, t).nOut);
  const nIn = a.length / fusedRank;
  const nOut = sizes.reduce((sum, n) => sum + n, 0);
  if (b.length !== nOut * fusedRank) return undefined;
  const nonZero = (rowStart: number, rows: number, slot: number) => {
    for (let o = rowStart; o < rowStart + rows; o++)
      for (let c = 0; c < rank; c++) if (b[o * fusedRank + slot * rank + c] !== 0) return true;
    return false;
  };
  // Member i uses column block blockOf[i]; the writer gives the adapted members blocks 0, 1, ... in order. With every
  // member adapted that is the identity; otherwise the blocks are found from where B is non-zero.
  const starts = sizes.map((_, i) => sizes.slice(0, i).reduce((sum, n) => sum + n, 0));
  let blockOf: Array<number | undefined>;
  if (slots === group.members.length) blockOf = group.members.map((_, i) => i);
  else {
    blockOf = sizes.map((size, i) => {
      const found = Array.from({ length: slots }, (_, slot) => slot).filter((slot) => nonZero(starts[i]!, size, slot));
      return found.length === 1 ? found[0] : undefined;
    });
    const used = blockOf.filter((slot): slot is number => slot !== undefined);
    if (used.length !== slots || used.some((slot, i) => slot !== i)) return undefined;
  }
  // Nothing outside the diagonal blocks: otherwise it is not an adapter written this way.
  for (let i = 0; i < sizes.length; i++)
    for (let slot = 0; slot < slots; slot++)
      if (slot !== blockOf[i] && nonZero(starts[i]!, sizes[i]!, slot)) return undefined;
  const out = [];
  let offset = 0;
  for (let i = 0; i < group.members.length; i++) {
    const slot = blockOf[i];
    if (slot !== undefined) {
      const mb = new Float32Array(sizes[i]! * rank);
      for (let o = 0; o < sizes[i]!; o++)
        for (let c = 0; c < rank; c++) mb[o * rank + c] = b[(offset + o) * fusedRank + slot * rank + c]! / slots;
      out.push({
        layer,
        target: group.members[i]!,
        nIn,
        nOut: sizes[i]!,
        a: a.slice(slot * rank * nIn, (slot + 1) * rank * nIn),
        b: mb,
      });
    }
    offset += sizes[i]!;
  }
  return out;
}
