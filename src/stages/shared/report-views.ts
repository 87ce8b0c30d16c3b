/** Report views that several stages share. */
import type { ReportRecordView } from "../../pipeline/stage-definition.js";

/** A record with `instruction`, `input` and `output` (an answer, an SFT example), shown as it is. */
export function answerView(record: Record<string, unknown>): ReportRecordView {
  return {
    instruction: String(record.instruction ?? ""),
    input: String(record.input ?? ""),
    thoughts: "",
    output: String(record.output ?? ""),
    principles: [],
  };
}
