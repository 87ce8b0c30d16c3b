/**
 * The salmon-dpo stage as data: DPO of the SFT policy on SALMON's aggregated preferences (the embedded, offline
 * alternative to PPO against the reward model; method-spec B.3-B.5). The policy starts from the SFT adapter
 * (verbose-clone's, else engrave's), from a given adapter, or fresh on the base; the reference is the adapter it
 * starts from (frozen), the SFT adapter, the base, or another adapter. Skipped unless the config turns it on.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { ConfigError } from "../../errors/index.js";
import { defineStage, progressOptions, type StageContext } from "../../pipeline/stage-definition.js";
import { trainConfigSchema } from "../../pipeline/train-config.js";
import type { StoreRecord } from "../../run-store/index.js";
import { type PreferenceOptions, preferenceLosses, preferenceOptionDefaults } from "../../training/trainer.js";
import { engraveStage } from "../engrave/run.js";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";
import { verboseCloneStage } from "../verbose-clone/run.js";
import { currentSet, type SalmonAggregateRecord, salmonAggregateStage } from "./aggregate-stage.js";
import { runSalmonDpo, salmonDpoStage } from "./dpo-stage.js";
import { estimateSalmonDpo } from "./estimate.js";
import { sftAdapterStages } from "./sft-model.js";

/** One DPO training pair as stored: the policy's prompt / chosen / rejected and the example's principles. */
export const salmonDpoPairSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  prompt: z.string(),
  chosen: z.string(),
  rejected: z.string(),
  principles: z.array(z.string()),
  negated: z.array(z.boolean()),
});

export const salmonDpoOptionsSchema = z.strictObject({
  policy: z
    .string()
    .min(1)
    .default("sft")
    .describe(
      'where the policy starts: "sft" (the verbose-clone adapter, else the engrave adapter), "base" (a fresh LoRA on the base), or an adapter (a GGUF LoRA, a PEFT folder or a training output folder)',
    ),
  reference: z
    .string()
    .min(1)
    .default("init")
    .describe(
      'the frozen reference: "init" (what the policy starts from: the SFT adapter by default, the base when it starts fresh), "sft", "base", or an adapter',
    ),
  beta: z
    .number()
    .gt(0)
    .default(preferenceOptionDefaults.beta)
    .describe("DPO's beta: how far the policy may move from the reference (default 0.1)"),
  loss: z
    .enum(preferenceLosses)
    .default(preferenceOptionDefaults.loss)
    .describe("sigmoid: DPO; ipo: IPO's squared loss on per-token mean log-ratios"),
  labelSmoothing: z
    .number()
    .min(0)
    .lt(0.5)
    .default(preferenceOptionDefaults.labelSmoothing)
    .describe(
      "conservative DPO (cDPO): the assumed share of flipped labels, in [0, 0.5); sigmoid loss only (default 0)",
    ),
  evalFraction: z
    .number()
    .min(0)
    .max(0.5)
    .default(0.05)
    .describe("share of the pairs held out for margin and accuracy (default 0.05)"),
  evalEvery: z.number().int().min(0).default(20).describe("evaluate the held-out pairs every N steps (default 20)"),
  train: trainConfigSchema.prefault({}),
});

export type SalmonDpoOptions = z.infer<typeof salmonDpoOptionsSchema>;

/**
 * The SFT adapter of the run: the verbose-clone adapter, else the engrave adapter (undefined when neither trained),
 * as the training's output folder when it holds the PEFT copy too: the embedded trainer reads its adapter.gguf, the
 * hf trainer its peft/.
 */
async function sftAdapter(context: StageContext<SalmonDpoOptions>): Promise<string | undefined> {
  for (const stage of sftAdapterStages) {
    try {
      const adapter = await context.adapterOf(stage);
      if (!adapter) continue;
      const folder = dirname(adapter);
      const both = basename(adapter) === "adapter.gguf" && existsSync(join(folder, "peft", "adapter_config.json"));
      return both ? folder : adapter;
    } catch (error) {
      // A pipeline without that stage.
      if (!(error instanceof ConfigError)) throw error;
    }
  }
  return undefined;
}

/** An adapter named by path: resolved against the config's folder, and there. */
function adapterPath(context: StageContext<SalmonDpoOptions>, value: string, option: string): string {
  const path = context.resolvePath(value);
  if (!existsSync(path)) {
    throw new ConfigError(
      `stages.${salmonDpoStage}.${option}: no adapter at ${path}; give "sft", "base"${option === "reference" ? ', "init"' : ""} or the path of a GGUF LoRA, a PEFT folder or a training output folder`,
      { field: `stages.${salmonDpoStage}.${option}`, path },
    );
  }
  return path;
}

/** The policy's start and the reference, as the trainer takes them, and in words for the manifest. */
async function resolveStartAndReference(context: StageContext<SalmonDpoOptions>): Promise<{
  initAdapter?: string;
  reference: NonNullable<PreferenceOptions["reference"]>;
  describe: { policy: string; reference: string };
}> {
  const { policy, reference } = context.options;
  let sft: string | undefined;
  const needSft = async (option: string) => {
    sft ??= await sftAdapter(context);
    if (!sft) {
      throw new ConfigError(
        `${salmonDpoStage} ${option === "policy" ? "starts from" : "compares with"} the SFT adapter (verbose-clone's, else engrave's), but neither stage has trained one in ${context.runDir}: run them first, or set stages.${salmonDpoStage}.${option} to "base" or an adapter`,
        { path: context.runDir, field: `stages.${salmonDpoStage}.${option}` },
      );
    }
    return sft;
  };
  const initAdapter =
    policy === "base" ? undefined : policy === "sft" ? await needSft("policy") : adapterPath(context, policy, "policy");
  const start = initAdapter ?? "base";
  if (reference === "init")
    return {
      ...(initAdapter ? { initAdapter } : {}),
      reference: "init",
      describe: { policy: start, reference: start },
    };
  if (reference === "base")
    return {
      ...(initAdapter ? { initAdapter } : {}),
      reference: "base",
      describe: { policy: start, reference: "base" },
    };
  const adapter = reference === "sft" ? await needSft("reference") : adapterPath(context, reference, "reference");
  // The same file as the start: the trainer copies the start's arrays instead of loading them again.
  const same = adapter === initAdapter;
  return {
    ...(initAdapter ? { initAdapter } : {}),
    reference: same ? "init" : { adapter },
    describe: { policy: start, reference: adapter },
  };
}

export const salmonDpoDefinition = defineStage({
  name: salmonDpoStage,
  summary: "SALMON, offline: DPO of the SFT policy on the aggregated preferences, against the frozen SFT adapter.",
  folders: [{ name: salmonDpoStage, kept: salmonDpoPairSchema, rejected: rejectedRecordSchema() }],
  upstream: [salmonAggregateStage, engraveStage, verboseCloneStage],
  options: salmonDpoOptionsSchema,
  // The trainer restarts by itself when `train` changes (its checkpoint is set aside).
  amountOptions: ["train"],
  models: ["trainer"],
  skipByDefault: true,
  needsUpstreamRecords: true,
  async run(context) {
    const { beta, loss, labelSmoothing, evalFraction, evalEvery, train } = context.options;
    const all = await context.upstreamRecords<SalmonAggregateRecord>(salmonAggregateStage);
    const examples = currentSet(all, (await context.manifestExtra(salmonAggregateStage))?.set);
    const { initAdapter, reference, describe } = await resolveStartAndReference(context);
    const { trainer, options, base } = await context.trainer(train);
    await context.releaseModels();
    const out = await runSalmonDpo({
      store: await context.store(),
      examples,
      trainer,
      base,
      ...(initAdapter ? { initAdapter } : {}),
      preference: { beta, loss, labelSmoothing, reference },
      describe,
      trainOptions: { seed: context.seed, evalFraction, evalEvery, ...options },
      ...progressOptions(context),
    });
    const last = out.train.evalCurve.at(-1);
    const heldOut =
      last?.accuracy === undefined
        ? ""
        : `, held-out accuracy ${last.accuracy.toFixed(3)}, margin ${(last.margin ?? 0).toFixed(3)}`;
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      adapter: out.train.adapterPath,
      summary: `${out.pairs} pairs, ${out.train.steps} steps, final loss ${out.train.finalLoss.toFixed(4)}${heldOut}`,
    };
  },
  estimate: estimateSalmonDpo,
  report: {
    [salmonDpoStage]: {
      view: (record: StoreRecord) => ({
        instruction: String(record.instruction ?? ""),
        input: String(record.input ?? ""),
        thoughts: "",
        output: `Chosen:\n${String(record.chosen ?? "")}\n\nRejected:\n${String(record.rejected ?? "")}`,
        principles: Array.isArray(record.principles) ? record.principles.map(String) : [],
        labels: { output: "chosen / rejected" },
      }),
      figures: (manifest) =>
        Object.fromEntries(
          (["finalLoss", "heldOutAccuracy", "heldOutMargin"] as const)
            .filter((name) => typeof manifest.extra[name] === "number")
            .map((name) => [name, manifest.extra[name] as number]),
        ),
    },
  },
});
