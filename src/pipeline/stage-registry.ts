/**
 * The stages in the order `selfalign run` runs them. `selfalign stage`, `merge`, `status` and `report` read the same
 * list. A new stage is one folder exporting its definition and one line here.
 */
import { engraveDefinition } from "../stages/engrave/definition.js";
import { isheepGroup } from "../stages/isheep/definition.js";
import {
  salmonAggregateDefinition,
  salmonPreferencesDefinition,
  salmonResponsesDefinition,
  salmonRewardModelDefinition,
} from "../stages/salmon/definitions.js";
import { salmonDpoDefinition } from "../stages/salmon/dpo-definition.js";
import { redTeamDefinition } from "../stages/red-team/definition.js";
import { salmonRlDefinition } from "../stages/salmon/rl-definition.js";
import { selfAlignDefinition } from "../stages/self-align/definition.js";
import { selfInstructDefinition } from "../stages/self-instruct/definition.js";
import { verboseCloneDefinition } from "../stages/verbose-clone/definition.js";
import { isGroup, type RegistryEntry, type StageDefinition, type StageFolderSpec } from "./stage-definition.js";

export type StageRegistry = readonly RegistryEntry[];

export const defaultRegistry: StageRegistry = [
  selfInstructDefinition,
  redTeamDefinition,
  selfAlignDefinition,
  engraveDefinition,
  verboseCloneDefinition,
  salmonResponsesDefinition,
  salmonPreferencesDefinition,
  salmonAggregateDefinition,
  salmonRewardModelDefinition,
  salmonDpoDefinition,
  salmonRlDefinition,
  isheepGroup,
] as StageRegistry;

/** Every stage definition, group members included, in order. */
export function allStages(registry: StageRegistry): StageDefinition[] {
  return registry.flatMap((entry) => (isGroup(entry) ? [...entry.stages] : [entry]));
}

export function findStage(registry: StageRegistry, name: string): StageDefinition | undefined {
  return allStages(registry).find((stage) => stage.name === name);
}

/** The folder of a round: `<folder>-round-<n>`. */
export function roundFolderName(folder: string, round: number): string {
  return `${folder}-round-${round}`;
}

/** The stage (and round) that writes a folder of a run, e.g. "self-align" or "isheep-answers-round-2". */
export function stageOfFolder(
  registry: StageRegistry,
  folder: string,
): { definition: StageDefinition; folder: StageFolderSpec; round?: number } | undefined {
  const roundMatch = /^(.*)-round-(\d+)$/.exec(folder);
  for (const definition of allStages(registry)) {
    for (const spec of definition.folders) {
      if (spec.name === folder) return { definition, folder: spec };
      if (roundMatch && spec.name === roundMatch[1]) return { definition, folder: spec, round: Number(roundMatch[2]) };
    }
  }
  return undefined;
}
