/**
 * SALMON's RL stage as data (method-spec B.5). `trainer: embedded` (the default) runs PPO on this machine against the
 * salmon-reward-model stage's reward model and exports the policy adapter (ppo-stage.ts). `trainer: openrlhf` runs
 * RL on a GPU cluster: it writes the prompts
 * OpenRLHF's PPO reads (the engraved chat prompt, a label with the request and its prompt type) and a ready launch
 * script for the pinned OpenRLHF version, whose rewards come from `selfalign serve --reward-model`. The stage-1
 * prompts are typed by where they came from: self-instruct's as general, red-team's as red-teaming (the type the
 * reference declares and never produces); a prompt file's get `promptType`.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import { salmonPromptTypes } from "../../constitution/index.js";
import { ConfigError } from "../../errors/index.js";
import {
  defineStage,
  progressOptions,
  type StageContext,
  type StageRunResult,
} from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import { readManifest, type StageStore } from "../../run-store/index.js";
import { recordId } from "../../run-store/record-id.js";
import { openRlhfPpoOptionsSchema, openRlhfVersion } from "../../training/openrlhf/openrlhf-commands.js";
import { promptStyles } from "../engrave/prompt.js";
import { engraveStage } from "../engrave/run.js";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";
import { promptSourceStages, promptsFileSchema, readStagePromptsOrFile } from "../shared/stage-prompts.js";
import { verboseCloneStage } from "../verbose-clone/run.js";
import { exportOpenRlhfPpo, openRlhfPromptRow, type RlPrompt } from "./openrlhf-export.js";
import {
  runSalmonPpo,
  salmonPpoOptionsSchema,
  salmonRolloutRecordSchema,
  salmonRolloutRejectedSchema,
  salmonRlRolloutsStage,
} from "./ppo-stage.js";
import { estimateSalmonRl } from "./estimate.js";
import { salmonOf } from "./reviewer-prompt.js";
import { salmonRewardModelStage } from "./reward-model-stage.js";

export const salmonRlStage = "salmon-rl";

/** One RL prompt as exported. */
export const salmonRlRecordSchema = keptRecordSchema({
  parentId: z.string(),
  instruction: z.string(),
  input: z.string(),
  promptType: z.enum(salmonPromptTypes),
  source: z.string(),
  prompt: z.string(),
  label: z.string(),
});

export const salmonRlTrainers = ["embedded", "openrlhf"] as const;

const openRlhfStageOptionsSchema = openRlhfPpoOptionsSchema
  .omit({ actor: true, prompts: true, output: true, checkpoints: true, rewardUrl: true })
  .extend({
    base: z
      .string()
      .min(1)
      .optional()
      .describe("the Hugging Face base the SFT adapter is merged into (or set BASE when running the script)"),
    sftAdapter: z
      .string()
      .min(1)
      .optional()
      .describe("the SFT adapter as a PEFT folder (default: the verbose-clone, else the engrave adapter's peft/)"),
    actor: z.string().min(1).optional().describe("a whole policy model to train instead of merging base + adapter"),
    rewardModel: z
      .string()
      .min(1)
      .optional()
      .describe("the reward model folder the script says to serve (default: the salmon-reward-model stage's)"),
    baseGguf: z.string().min(1).optional().describe("the base as a GGUF, for converting the result back"),
    rewardUrl: z
      .string()
      .url()
      .default("http://127.0.0.1:8000/get_reward")
      .describe("selfalign serve's POST /get_reward, as the GPU nodes reach it"),
  });

export const salmonRlOptionsSchema = z.strictObject({
  trainer: z
    .enum(salmonRlTrainers)
    .default("embedded")
    .describe(
      `embedded: PPO on this machine (small models); openrlhf: the prompts and a launch script for OpenRLHF ${openRlhfVersion}'s PPO on a GPU cluster`,
    ),
  prompts: promptsFileSchema,
  promptType: z.enum(salmonPromptTypes).default("general").describe("the prompt type of a prompt file's prompts"),
  maxPrompts: positiveInt.optional().describe("export at most this many prompts (default: all)"),
  style: z.enum(promptStyles).default("concise").describe("the chat format the SFT model was trained in"),
  embedded: salmonPpoOptionsSchema.prefault({}),
  openrlhf: openRlhfStageOptionsSchema.prefault({}),
});

export type SalmonRlOptions = z.infer<typeof salmonRlOptionsSchema>;

/** The adapter a stage of the run trained, if this pipeline has that stage and it finished. */
async function adapterIfAny(context: StageContext<SalmonRlOptions>, stage: string): Promise<string | undefined> {
  try {
    return await context.adapterOf(stage);
  } catch (error) {
    if (error instanceof ConfigError) return undefined;
    throw error;
  }
}

/** The PEFT folder beside a training's adapter.gguf, if it has one. */
function peftBeside(adapter: string | undefined): string | undefined {
  if (!adapter) return undefined;
  const peft = join(dirname(adapter), "peft");
  return existsSync(join(peft, "adapter_config.json")) ? peft : undefined;
}

export const salmonRlDefinition = defineStage({
  name: salmonRlStage,
  summary: `SALMON RL (B.5): PPO against the principle-following reward model, embedded, or on OpenRLHF ${openRlhfVersion} (prompts and a launch script).`,
  folders: [
    { name: salmonRlStage, kept: salmonRlRecordSchema, rejected: rejectedRecordSchema() },
    { name: salmonRlRolloutsStage, kept: salmonRolloutRecordSchema, rejected: salmonRolloutRejectedSchema },
  ],
  upstream: [...promptSourceStages, engraveStage, verboseCloneStage, salmonRewardModelStage],
  options: salmonRlOptionsSchema,
  // PPO restarts by itself when its settings change (its checkpoint and records are keyed by them).
  amountOptions: ["maxPrompts", "embedded"],
  // The training base, for embedded PPO.
  models: ["policy"],
  skipByDefault: true,
  needsUpstreamRecords: (options) => options.prompts === undefined,
  flagAliases: { target: "maxPrompts" },
  report: {
    [salmonRlRolloutsStage]: {
      view: (record) => ({
        instruction: String(record.instruction ?? ""),
        input: String(record.input ?? ""),
        thoughts: [
          `step ${String(record.step)}: reward ${Number(record.reward).toFixed(3)} = score ${Number(record.score).toFixed(3)} + stop penalty ${Number(record.stopPenalty)} + length bonus ${Number(record.lengthBonus).toFixed(3)}`,
          `KL to the reference ${Number(record.kl).toFixed(3)}, ${String(record.responseTokens)} tokens${record.stopped ? "" : ", never stopped"}`,
        ].join("\n"),
        output: String(record.output ?? ""),
        principles: Array.isArray(record.principles) ? record.principles.map(String) : [],
        labels: { thoughts: "reward", output: "rollout" },
      }),
    },
  },
  estimate: estimateSalmonRl,
  async run(context) {
    const { prompts: file, promptType, maxPrompts, style, openrlhf, trainer } = context.options;
    salmonOf(context.constitution);
    const read = (await readStagePromptsOrFile(context, file, promptSourceStages)).slice(0, maxPrompts);
    const prompts: Array<RlPrompt & { source: string }> = read.map((prompt) => ({
      id: prompt.id,
      instruction: prompt.instruction,
      ...(prompt.input ? { input: prompt.input } : {}),
      promptType: file ? promptType : prompt.source === "red-team" ? "red-teaming" : "general",
      source: prompt.source ?? "prompts",
    }));
    const store = await context.store();
    for (const prompt of prompts) {
      const row = openRlhfPromptRow(context.constitution, prompt, style);
      await store.appendRecord({
        id: recordId(salmonRlStage, prompt.id, style, prompt.promptType),
        parentId: prompt.id,
        instruction: prompt.instruction,
        input: prompt.input ?? "",
        promptType: prompt.promptType,
        source: prompt.source,
        prompt: row.prompt,
        label: row.label,
      });
    }
    if (trainer === "embedded") return runEmbedded(context, store, prompts);
    const { base, sftAdapter, actor, rewardModel, baseGguf, ...ppo } = openrlhf;
    const sft =
      sftAdapter ??
      peftBeside(await adapterIfAny(context, verboseCloneStage)) ??
      peftBeside(await adapterIfAny(context, engraveStage));
    const rewardFolder = rewardModel ?? (await trainedRewardModel(context));
    const dir = join(store.dir, "openrlhf");
    const out = await exportOpenRlhfPpo(dir, context.constitution, prompts, style, {
      ...(base ? { base: maybePath(context, base) } : {}),
      ...(sft ? { sftAdapter: context.resolvePath(sft) } : {}),
      ...(actor ? { actor: maybePath(context, actor) } : {}),
      ...(rewardFolder ? { rewardModel: context.resolvePath(rewardFolder) } : {}),
      ...(baseGguf ? { baseGguf: context.resolvePath(baseGguf) } : {}),
      ppo,
    });
    const warnings: string[] = [];
    if (!actor && !(base && sft))
      warnings.push(
        `no ${base ? "SFT adapter" : "Hugging Face base (openrlhf.base)"} to merge into the policy; set ${base ? "SFT_ADAPTER" : "BASE"} (or ACTOR) when you run the script`,
      );
    return {
      usage: { promptTokens: 0, completionTokens: 0 },
      warnings,
      summary: `wrote ${out.count} prompts to ${out.prompts} and the launch script ${out.script}${warnings.map((w) => `\nwarning: ${w}`).join("")}`,
    };
  },
});

/** The salmon-reward-model stage's folder, as it records it in its manifest (`rewardModel`), if it ran. */
async function trainedRewardModel(context: StageContext<SalmonRlOptions>): Promise<string | undefined> {
  const trained = (await readManifest(join(context.runDir, salmonRewardModelStage, "manifest.json")))?.extra
    .rewardModel;
  return typeof trained === "string" ? trained : undefined;
}

/** `trainer: embedded`: PPO here, the policy adapter recorded in the manifest as every training's is. */
async function runEmbedded(
  context: StageContext<SalmonRlOptions>,
  store: StageStore,
  prompts: readonly RlPrompt[],
): Promise<StageRunResult> {
  const { embedded, style } = context.options;
  const field = `stages.${salmonRlStage}.embedded`;
  if (!context.trainBase)
    throw new ConfigError(
      "salmon-rl's embedded PPO trains on a local GGUF, but none is known: set `trainBase` (or a GGUF `model`) in the config, or pass --train-base",
      { field: "trainBase" },
    );
  const rewardModel = embedded.rewardModel
    ? context.resolvePath(embedded.rewardModel)
    : await trainedRewardModel(context);
  if (!rewardModel)
    throw new ConfigError(
      `salmon-rl's embedded PPO needs a reward model: run the salmon-reward-model stage first, or set ${field}.rewardModel to a reward model folder`,
      { field: `${field}.rewardModel` },
    );
  const sftAdapter = embedded.sftAdapter
    ? context.resolvePath(embedded.sftAdapter)
    : ((await adapterIfAny(context, verboseCloneStage)) ?? (await adapterIfAny(context, engraveStage)));
  await context.releaseModels();
  const rollouts = await context.store(salmonRlRolloutsStage);
  const before = { ...rollouts.manifest.usage };
  const result = await runSalmonPpo({
    store: rollouts,
    dir: store.dir,
    prompts,
    constitution: context.constitution,
    style,
    base: context.trainBase,
    ...(sftAdapter ? { sftAdapter } : {}),
    rewardModel,
    options: embedded,
    seed: context.seed,
    ...progressOptions(context),
  });
  const last = result.curve.at(-1);
  store.manifest.extra.adapter = result.adapterPath;
  store.manifest.extra.ppo = {
    steps: result.steps,
    curve: join(store.dir, "ppo", "ppo.jsonl"),
    ...(last ? { finalReward: last.reward, finalKl: last.kl } : {}),
    sftAdapter: sftAdapter ?? null,
    rewardModel,
  };
  await store.saveManifest();
  await rollouts.saveManifest();
  const warnings = sftAdapter
    ? []
    : ["no SFT adapter (verbose-clone or engrave) to start from: PPO trains a fresh LoRA on the base"];
  return {
    usage: {
      promptTokens: rollouts.manifest.usage.promptTokens - before.promptTokens,
      completionTokens: rollouts.manifest.usage.completionTokens - before.completionTokens,
    },
    adapter: result.adapterPath,
    warnings,
    summary: `${result.steps} PPO steps on ${prompts.length - result.dropped} prompts${result.dropped ? ` (${result.dropped} too long)` : ""}${last ? `: reward ${last.reward.toFixed(3)}, KL ${last.kl.toFixed(3)}, ${last.responseLength.toFixed(1)} response tokens` : ""}; policy adapter ${result.adapterPath}${warnings.map((w) => `\nwarning: ${w}`).join("")}`,
  };
}

/** A hub id (owner/name) stays as it is; anything written as a path is resolved against the config's folder. */
function maybePath(context: StageContext<SalmonRlOptions>, value: string): string {
  return /^(\.{0,2}\/|~\/)/.test(value) || existsSync(context.resolvePath(value)) ? context.resolvePath(value) : value;
}
