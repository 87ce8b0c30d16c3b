/**
 * Semantic checks of a loaded constitution, beyond what the schema can say: exemplars cite real principles and
 * their thoughts name them, ids are unique, seed tasks are not near-duplicates (ROUGE-L, as self-instruct's dedup).
 */
import { rougeLTokens, rougeTokenize } from "../text/rouge-l.js";
import { type ConstitutionIssue, findRepeats } from "./constitution-issue.js";
import type { Constitution, ConstitutionFileKey } from "./constitution-schema.js";
import { locateInConstitution } from "./load-constitution.js";
import { constitutionPlaceholders } from "./render-constitution-text.js";

export interface CheckConstitutionOptions {
  /** Seed tasks whose instructions have a ROUGE-L F-measure above this are near-duplicates. Default 0.7. */
  nearDuplicateThreshold?: number;
  /** Principle count the method expects; another count is a warning. Default 16. */
  expectedPrinciples?: number;
  /** Red-team type count the method expects; another count is a warning. Default 20. */
  expectedRedTeamTypes?: number;
}

/** Every problem found, errors first; an empty list means the constitution is ready to use. */
export function checkConstitution(
  constitution: Constitution,
  options: CheckConstitutionOptions = {},
): ConstitutionIssue[] {
  const { nearDuplicateThreshold = 0.7, expectedPrinciples = 16, expectedRedTeamTypes = 20 } = options;
  const issues: ConstitutionIssue[] = [];
  const report = (
    severity: ConstitutionIssue["severity"],
    key: ConstitutionFileKey,
    path: PropertyKey[],
    message: string,
  ) => {
    // Located in the file the field was written in, named as written there (a seed file may spell fields its own way).
    issues.push({ severity, ...locateInConstitution(constitution, key, path), message });
  };
  const { principles, exemplars, redTeamTypes, seedTasks, assistant } = constitution;

  // Unique ids in every list (the loader checks this too; constitutions built in code are checked here).
  const lists = [
    ["principles", "principles", principles],
    ["exemplars", "exemplars", exemplars],
    ["redTeam", "types", redTeamTypes],
    ["seedTasks", "tasks", seedTasks],
  ] as const;
  for (const [key, listKey, list] of lists) {
    for (const { value, index, first } of findRepeats(list.map((item) => item.id)))
      report("error", key, [listKey, index, "id"], `duplicate id "${value}", already used by ${listKey}[${first}]`);
  }

  if (principles.length !== expectedPrinciples)
    report(
      "warning",
      "principles",
      ["principles"],
      `${principles.length} principles; the method uses ${expectedPrinciples}`,
    );
  const numbers = principles.map((principle) => principle.number).sort((a, b) => a - b);
  if (numbers.some((number, index) => number !== index + 1))
    report(
      "warning",
      "principles",
      ["principles"],
      `principle numbers are ${numbers.join(", ")}; number them 1 to ${principles.length}`,
    );
  principles.forEach((principle, index) => {
    if (!principle.text.includes("{name}"))
      report(
        "warning",
        "principles",
        ["principles", index, "text"],
        `does not mention {name}; rules read "{name} should ..."`,
      );
  });

  const byId = new Map(principles.map((principle) => [principle.id, principle]));
  const byNumber = new Map(principles.map((principle) => [principle.number, principle]));
  exemplars.forEach((exemplar, e) => {
    exemplar.turns.forEach((turn, t) => {
      const at = ["exemplars", e, "turns", t];
      if (!turn.thoughts.startsWith(assistant.thoughtOpening))
        report(
          "error",
          "exemplars",
          [...at, "thoughts"],
          `must start with the thoughtOpening of assistant.yaml ("${assistant.thoughtOpening}"); stage 2 keeps only answers whose thoughts start with it`,
        );
      turn.cites.forEach((cited, c) => {
        const principle = byId.get(cited);
        if (!principle) {
          report(
            "error",
            "exemplars",
            [...at, "cites", c],
            `unknown principle id "${cited}"; known ids: ${[...byId.keys()].join(", ")}`,
          );
        } else if (!new RegExp(`(^|\\D)${principle.number}(\\D|$)`).test(turn.thoughts)) {
          report(
            "error",
            "exemplars",
            [...at, "thoughts"],
            `cites "${cited}" but never names its number; write "${principle.number} (${principle.name})" in the thoughts`,
          );
        }
      });
      for (const match of turn.thoughts.matchAll(/(\d+) \(([^)]+)\)/g)) {
        const principle = byNumber.get(Number(match[1]));
        if (!principle)
          report("error", "exemplars", [...at, "thoughts"], `names rule ${match[1]}, but no principle has that number`);
        else if (principle.name !== match[2])
          report(
            "warning",
            "exemplars",
            [...at, "thoughts"],
            `writes "${match[0]}" but rule ${principle.number} is named "${principle.name}"`,
          );
        else if (!turn.cites.includes(principle.id))
          report(
            "warning",
            "exemplars",
            [...at, "cites"],
            `the thoughts name rule ${principle.number} (${principle.name}); add "${principle.id}" to cites`,
          );
      }
    });
  });

  if (redTeamTypes.length !== expectedRedTeamTypes)
    report(
      "warning",
      "redTeam",
      ["types"],
      `${redTeamTypes.length} red-team types; the method uses ${expectedRedTeamTypes}`,
    );
  redTeamTypes.forEach((type, index) => {
    if (!type.label.startsWith("Questions that require"))
      report(
        "warning",
        "redTeam",
        ["types", index, "label"],
        `labels read "Questions that require ..." (red-teaming swaps "Questions" for "Instructions")`,
      );
  });

  // Near-duplicate seed tasks waste the few examples self-instruct shows per prompt.
  const tokens = seedTasks.map((task) => rougeTokenize(task.instruction));
  for (let i = 0; i < seedTasks.length; i++) {
    for (let j = 0; j < i; j++) {
      const score = rougeLTokens(tokens[i] ?? [], tokens[j] ?? []);
      if (score > nearDuplicateThreshold)
        report(
          "error",
          "seedTasks",
          ["tasks", i, "instruction"],
          `near-duplicate of tasks[${j}] ("${seedTasks[j]?.id}"): ROUGE-L ${score.toFixed(2)} > ${nearDuplicateThreshold}; reword one of them or remove it`,
        );
    }
  }
  if (seedTasks.length < 5)
    report(
      "warning",
      "seedTasks",
      ["tasks"],
      `only ${seedTasks.length} seed tasks; self-instruct shows 5 per prompt and the method starts from about 175`,
    );

  for (const key of ["verbosePrompt", "concisePrompt"] as const) {
    if (!assistant[key].trimEnd().endsWith("### User"))
      report("error", "assistant", [key], `must end with a "### User" line; the user's message is appended after it`);
  }
  checkPlaceholders(constitution, report);
  const rank = (issue: ConstitutionIssue) => (issue.severity === "error" ? 0 : 1);
  return issues.sort((a, b) => rank(a) - rank(b));
}

function checkPlaceholders(
  constitution: Constitution,
  report: (severity: "warning", key: ConstitutionFileKey, path: PropertyKey[], message: string) => void,
): void {
  const known = new Set<string>(constitutionPlaceholders);
  const visit = (key: ConstitutionFileKey, path: PropertyKey[], value: unknown) => {
    if (typeof value === "string") {
      for (const match of value.matchAll(/\{([A-Za-z][A-Za-z0-9_]*)\}/g)) {
        if (!known.has(match[1] ?? ""))
          report(
            "warning",
            key,
            path,
            `unknown placeholder {${match[1]}}; known: ${[...known].map((p) => `{${p}}`).join(", ")}`,
          );
      }
    } else if (Array.isArray(value)) {
      value.forEach((item, index) => {
        visit(key, [...path, index], item);
      });
    } else if (value && typeof value === "object")
      for (const [field, item] of Object.entries(value)) visit(key, [...path, field], item);
  };
  visit("principles", ["principles"], constitution.principles);
  visit("exemplars", ["exemplars"], constitution.exemplars);
  visit("redTeam", ["types"], constitution.redTeamTypes);
  visit("seedTasks", ["tasks"], constitution.seedTasks);
  visit("assistant", [], constitution.assistant);
}
