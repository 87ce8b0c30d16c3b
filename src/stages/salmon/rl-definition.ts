/**
 * SALMON's RL stage as data (method-spec B.5). `trainer: openrlhf` runs RL on a GPU cluster: it writes the prompts
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
import { defineStage, type StageContext } from "../../pipeline/stage-definition.js";
import { positiveInt } from "../../pipeline/train-config.js";
import { readManifest } from "../../run-store/index.js";
import { recordId } from "../../run-store/record-id.js";
import { openRlhfPpoOptionsSchema, openRlhfVersion } from "../../training/openrlhf/openrlhf-commands.js";
import { promptStyles } from "../engrave/prompt.js";
import { engraveStage } from "../engrave/run.js";
import { keptRecordSchema, rejectedRecordSchema } from "../shared/record-schemas.js";
import { promptSourceStages, promptsFileSchema, readStagePromptsOrFile } from "../shared/stage-prompts.js";
import { verboseCloneStage } from "../verbose-clone/run.js";
import { exportOpenRlhfPpo, openRlhfPromptRow, type RlPrompt } from "./openrlhf-export.js";
import { salmonOf } from "./reviewer-prompt.js";

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

export const salmonRlTrainers = ["openrlhf"] as const;

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
    .default("openrlhf")
    .describe(`openrlhf: the prompts and a launch script for OpenRLHF ${openRlhfVersion}'s PPO on a GPU cluster`),
  prompts: promptsFileSchema,
  promptType: z.enum(salmonPromptTypes).default("general").describe("the prompt type of a prompt file's prompts"),
  maxPrompts: positiveInt.optional().describe("export at most this many prompts (default: all)"),
  style: z.enum(promptStyles).default("concise").describe("the chat format the SFT model was trained in"),
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
  summary: `SALMON RL (B.5): prompts and a launch script for PPO on OpenRLHF ${openRlhfVersion}, rewarded by selfalign serve --reward-model.`,
  folders: [{ name: salmonRlStage, kept: salmonRlRecordSchema, rejected: rejectedRecordSchema() }],
  upstream: [...promptSourceStages, engraveStage, verboseCloneStage],
  options: salmonRlOptionsSchema,
  amountOptions: ["maxPrompts"],
  models: [],
  skipByDefault: true,
  needsUpstreamRecords: (options) => options.prompts === undefined,
  flagAliases: { target: "maxPrompts" },
  async run(context) {
    const { prompts: file, promptType, maxPrompts, style, openrlhf } = context.options;
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
    const { base, sftAdapter, actor, rewardModel, baseGguf, ...ppo } = openrlhf;
    const sft =
      sftAdapter ??
      peftBeside(await adapterIfAny(context, verboseCloneStage)) ??
      peftBeside(await adapterIfAny(context, engraveStage));
    // The salmon-reward-model stage records its folder in its manifest (`rewardModel`).
    const trained = (await readManifest(join(context.runDir, "salmon-reward-model", "manifest.json")))?.extra
      .rewardModel;
    const rewardFolder = rewardModel ?? (typeof trained === "string" ? trained : undefined);
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

/** A hub id (owner/name) stays as it is; anything written as a path is resolved against the config's folder. */
function maybePath(context: StageContext<SalmonRlOptions>, value: string): string {
  return /^(\.{0,2}\/|~\/)/.test(value) || existsSync(context.resolvePath(value)) ? context.resolvePath(value) : value;
}
