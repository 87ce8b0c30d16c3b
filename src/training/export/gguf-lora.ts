/**
 * GGUF LoRA adapters as llama.cpp reads them (src/llama-adapter.cpp): general.type=adapter, adapter.type=lora,
 * adapter.lora.alpha (F32), and per adapted weight `<base>.lora_a` ne=[n_in, r] and `<base>.lora_b` ne=[r, n_out] (F32).
 */
import { ConfigError } from "../../errors/index.js";
import { GgufFile, gguf, writeGguf } from "../../gguf/index.js";
import {
  asFloat32,
  type LoraAdapter,
  type LoraModule,
  type LoraTarget,
  loraGgufNames,
  loraTargets,
} from "../embedded/lora.js";
import {
  type FusedLayout,
  fusedAdapterReadError,
  hasFusedProjections,
  storedLoraModules,
  unfuseStoredModule,
} from "./fused-lora.js";

export function loraTensorBase(module: Pick<LoraModule, "layer" | "target">): string {
  return `blk.${module.layer}.${loraGgufNames[module.target]}.weight`;
}

/**
 * Write the adapter for a model of `architecture`; with `layout`, on the tensors the model stores (phi3's fused
 * attn_qkv and ffn_up, see fused-lora.ts).
 */
export async function writeGgufLora(
  path: string,
  adapter: LoraAdapter,
  architecture: string,
  name = "selfalign-lora",
  layout?: FusedLayout,
): Promise<void> {
  const tensors = hasFusedProjections(layout)
    ? storedLoraModules(adapter, layout).flatMap((m) => {
        // llama.cpp scales by alpha / this tensor's rank; a fused rank of g·r needs B × g to keep alpha / r.
        const b = m.members === 1 ? m.b : m.b.map((value) => value * m.members);
        const base = `blk.${m.layer}.${m.stem}.weight`;
        return [
          { name: `${base}.lora_a`, dims: [m.nIn, m.rank], data: m.a },
          { name: `${base}.lora_b`, dims: [m.rank, m.nOut], data: b },
        ];
      })
    : adapter.modules.flatMap((m) => [
        { name: `${loraTensorBase(m)}.lora_a`, dims: [m.nIn, adapter.rank], data: asFloat32(m.a) },
        { name: `${loraTensorBase(m)}.lora_b`, dims: [adapter.rank, m.nOut], data: asFloat32(m.b) },
      ]);
  await writeGguf(path, {
    metadata: {
      "general.type": gguf.string("adapter"),
      "general.architecture": gguf.string(architecture),
      "general.name": gguf.string(name),
      "adapter.type": gguf.string("lora"),
      "adapter.lora.alpha": gguf.f32(adapter.alpha),
      // The per-projection rank, for reading fused tensors (rank members × r) back; llama.cpp ignores it.
      ...(hasFusedProjections(layout) ? { "selfalign.lora.rank": gguf.u32(adapter.rank) } : {}),
    },
    tensors,
  });
}

/**
 * Read a GGUF LoRA written by this project or by llama.cpp's convert_lora_to_gguf.py (F32/F16/BF16/Q8_0). For a model
 * that stores projections fused (`layout`, phi3), fused tensors written by this project are split back.
 */
export async function readGgufLora(
  path: string,
  layout?: FusedLayout,
): Promise<{ adapter: LoraAdapter; architecture: string }> {
  const file = await GgufFile.open(path);
  try {
    if (file.value("general.type") !== "adapter" || file.value("adapter.type") !== "lora") {
      throw new ConfigError("not a GGUF LoRA adapter (general.type must be adapter, adapter.type lora)", { path });
    }
    const stems = new Map<string, LoraTarget>(loraTargets.map((t) => [loraGgufNames[t], t]));
    const fusedStems = new Set([...(layout?.fusedQkv ? ["attn_qkv"] : []), ...(layout?.fusedGateUp ? ["ffn_up"] : [])]);
    const modules: LoraModule[] = [];
    const fused: Array<{ stem: string; layer: number; a: Float32Array; b: Float32Array; rank: number }> = [];
    let rank = 0;
    for (const info of file.header.tensors) {
      const match = /^blk\.(\d+)\.([a-z_]+)\.weight\.lora_a$/.exec(info.name);
      if (!match) continue;
      const base = info.name.slice(0, -".lora_a".length);
      const bInfo = file.tensorInfo(`${base}.lora_b`);
      if (!bInfo) throw new ConfigError(`${base}.lora_b is missing`, { path });
      if (fusedStems.has(match[2]!)) {
        const a = await file.readTensor(info.name);
        const b = await file.readTensor(`${base}.lora_b`);
        fused.push({ stem: match[2]!, layer: Number(match[1]), a, b, rank: info.dims[1]! });
        continue;
      }
      const target = stems.get(match[2]!);
      if (!target) throw new ConfigError(`unsupported LoRA tensor ${info.name}`, { path });
      rank = info.dims[1]!;
      modules.push({
        layer: Number(match[1]),
        target,
        nIn: info.dims[0]!,
        nOut: bInfo.dims[1]!,
        a: await file.readTensor(info.name),
        b: await file.readTensor(`${base}.lora_b`),
      });
    }
    if (fused.length > 0) {
      const stored = file.value("selfalign.lora.rank");
      const perProjection = stored === undefined ? rank : Number(stored);
      for (const f of fused) {
        const parts =
          perProjection > 0 && layout
            ? unfuseStoredModule(f.stem, f.layer, f.a, f.b, f.rank, perProjection, layout)
            : undefined;
        if (!parts) throw fusedAdapterReadError(path, `fused ${f.stem} of another tool`);
        modules.push(...parts);
      }
      rank = perProjection;
    }
    if (modules.length === 0) throw new ConfigError("the adapter has no LoRA tensors", { path });
    const targets = loraTargets.filter((t) => modules.some((m) => m.target === t));
    modules.sort((x, y) => x.layer - y.layer || loraTargets.indexOf(x.target) - loraTargets.indexOf(y.target));
    const alpha = Number(file.value("adapter.lora.alpha") ?? rank);
    return { adapter: { rank, alpha, targets, modules }, architecture: String(file.value("general.architecture")) };
  } finally {
    await file.close();
  }
}
