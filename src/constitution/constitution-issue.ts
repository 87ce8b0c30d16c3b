/** A problem found while loading or checking a constitution, located by file, line and field. */
export interface ConstitutionIssue {
  /** An error makes the constitution unusable; a warning is worth a look but does not stop a run. */
  severity: "error" | "warning";
  /** File the problem is in (as given: folder joined with the file name). */
  file: string;
  /** 1-based line, where known. */
  line?: number;
  /** Field path such as `exemplars[2].cites[1]`, where known. */
  field?: string;
  message: string;
}

/** `exemplars.yaml, line 42, exemplars[2].cites[1]: unknown principle id "candour"; ...` */
export function formatConstitutionIssue(issue: ConstitutionIssue): string {
  const where = [issue.file, issue.line === undefined ? undefined : `line ${issue.line}`, issue.field]
    .filter((part) => part !== undefined)
    .join(", ");
  return `${where}: ${issue.message}`;
}

/** Render a field path the way a reader writes it: `exemplars[2].cites[1]`. */
export function formatFieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** Each entry of `values` equal to an earlier one, with the index of that first one (duplicate ids, numbers). */
export function findRepeats<T>(values: readonly T[]): Array<{ value: T; index: number; first: number }> {
  const firstIndex = new Map<T, number>();
  const repeats: Array<{ value: T; index: number; first: number }> = [];
  values.forEach((value, index) => {
    const first = firstIndex.get(value);
    if (first === undefined) firstIndex.set(value, index);
    else repeats.push({ value, index, first });
  });
  return repeats;
}
