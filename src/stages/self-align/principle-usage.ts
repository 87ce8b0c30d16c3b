/** Principle usage: how often kept answers' internal thoughts cite each principle, overall and per red-team type. */

export interface PrincipleUsage {
  /** Kept records counted. */
  records: number;
  /** Principle id -> citations. */
  overall: Record<string, number>;
  /** Red-team question type -> principle id -> citations (records without a type are under "self-instruct"). */
  byQuestionType: Record<string, Record<string, number>>;
}

export function countPrincipleUsage(
  records: Iterable<{ citedPrinciples: readonly string[]; questionType?: unknown }>,
  principleIds: readonly string[] = [],
): PrincipleUsage {
  const overall: Record<string, number> = Object.fromEntries(principleIds.map((id) => [id, 0]));
  const byQuestionType: Record<string, Record<string, number>> = {};
  let count = 0;
  for (const record of records) {
    count++;
    const type = typeof record.questionType === "string" ? record.questionType : "self-instruct";
    const perType = byQuestionType[type] ?? {};
    byQuestionType[type] = perType;
    for (const id of record.citedPrinciples) {
      overall[id] = (overall[id] ?? 0) + 1;
      perType[id] = (perType[id] ?? 0) + 1;
    }
  }
  return { records: count, overall, byQuestionType };
}
