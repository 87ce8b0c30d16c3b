/**
 * SALMON's SFT model (method-spec B.0-B.2): the policy that samples the two responses and the judge that labels them
 * are both the SELF-ALIGN model: the training base with the verbose-cloning adapter, or the engraving adapter when
 * verbose cloning did not run, unless a stage names another model (a vLLM server with the adapter merged, say).
 */
import type { LanguageModel } from "../../backends/language-model.js";
import type { ModelSpec } from "../../backends/model-spec.js";
import { ConfigError } from "../../errors/index.js";
import type { StageContext } from "../../pipeline/stage-definition.js";
import { engraveStage } from "../engrave/run.js";
import { verboseCloneStage } from "../verbose-clone/run.js";

/** The stages whose adapter makes the SFT model, preferred first. */
export const sftAdapterStages = [verboseCloneStage, engraveStage] as const;

/** `spec` when given; else the training base + the newest SELF-ALIGN adapter. `option` names the stage's option. */
export async function sftModel(
  context: Pick<StageContext<unknown>, "languageModel" | "adapterOf" | "trainBase" | "runDir" | "definition">,
  spec: ModelSpec | undefined,
  option: string,
): Promise<LanguageModel> {
  if (spec !== undefined) return context.languageModel(spec);
  let adapter: string | undefined;
  for (const stage of sftAdapterStages) {
    adapter = await context.adapterOf(stage);
    if (adapter) break;
  }
  const field = `stages.${context.definition.name}.${option}`;
  if (!adapter) {
    throw new ConfigError(
      `${context.definition.name} uses the SELF-ALIGN model (the training base + the verbose-clone or engrave adapter), but neither stage has trained an adapter in ${context.runDir}: run them first, or set ${field} to a model`,
      { path: context.runDir, field },
    );
  }
  if (!context.trainBase) {
    throw new ConfigError(
      `${context.definition.name} loads the training base with the adapter ${adapter}, but no training base is known: set \`trainBase\` (or a GGUF \`model\`), pass --train-base, or set ${field}`,
      { field: "trainBase" },
    );
  }
  return context.languageModel(context.trainBase, { lora: [adapter] });
}
