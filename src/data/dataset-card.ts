/**
 * A dataset card: the README.md the Hugging Face hub shows for a dataset folder. Its YAML header lists each Parquet
 * file as a config (so the hub's viewer and `datasets.load_dataset(repo, name)` pick the right file), and its body
 * says what the fields are, how many rows each file has, which constitution made the data and with what command.
 */
import { stringify } from "yaml";
import { describeParquetColumn, type ParquetColumn } from "./write-parquet.js";

export interface DatasetCardFile {
  /** Config name on the hub (`messages`, `alpaca`, `records`). */
  config: string;
  /** File name, relative to the card. */
  file: string;
  rows: number;
  columns: readonly ParquetColumn[];
  /** The config `datasets.load_dataset` opens when none is named. Default: the first file. */
  default?: boolean;
}

export interface DatasetCardOptions {
  title: string;
  /** What the data is, in a sentence or two. */
  summary: string;
  files: readonly DatasetCardFile[];
  /** What a field holds, by field name; fields without one are listed with their type only. */
  fieldDescriptions?: Readonly<Record<string, string>>;
  /** sha256 of the constitution the data was made with. */
  constitutionHash?: string;
  /** The command line that made the data. */
  command?: string;
  /** Further provenance, shown as a list: `{ "selfalign version": "0.1.0", generator: "llama-cpp:base.gguf" }`. */
  provenance?: Readonly<Record<string, string>>;
  /** Files beside the card that hold the same rows in other formats (`alpaca.jsonl`), named in the card. */
  alsoAs?: readonly string[];
}

/** `|` and line breaks would end a Markdown table cell. */
const cell = (text: string) => text.replace(/\|/g, "\\|").replace(/\s*\n\s*/g, " ");

/** The text of README.md for a dataset folder. */
export function renderDatasetCard(options: DatasetCardOptions): string {
  const defaultIndex = Math.max(
    0,
    options.files.findIndex((file) => file.default),
  );
  const header = stringify(
    {
      configs: options.files.map((file, index) => ({
        config_name: file.config,
        data_files: [{ split: "train", path: file.file }],
        ...(index === defaultIndex ? { default: true } : {}),
      })),
      tags: ["selfalign", "synthetic"],
    },
    { lineWidth: 0 },
  );
  const lines = [`---`, header.trimEnd(), `---`, "", `# ${options.title}`, "", options.summary, ""];
  lines.push("## Files", "", "| config | file | rows |", "| --- | --- | ---: |");
  for (const file of options.files) lines.push(`| ${cell(file.config)} | ${cell(file.file)} | ${file.rows} |`);
  if (options.alsoAs?.length)
    lines.push("", `The same rows are also in ${options.alsoAs.map((f) => `\`${f}\``).join(", ")}.`);
  lines.push("", "## Fields");
  for (const file of options.files) {
    lines.push("", `### ${file.file}`, "", "| field | type | description |", "| --- | --- | --- |");
    for (const column of file.columns) {
      const description = options.fieldDescriptions?.[column.name] ?? "";
      lines.push(`| ${cell(column.name)} | ${cell(describeParquetColumn(column))} | ${cell(description)} |`);
    }
  }
  const provenance: Array<[string, string]> = [
    ...(options.constitutionHash ? [["constitution hash", `\`${options.constitutionHash}\``] as [string, string]] : []),
    ["made by", options.command ? `\`${options.command}\`` : "not recorded"],
    ...Object.entries(options.provenance ?? {}).map(([key, value]) => [key, value] as [string, string]),
  ];
  lines.push("", "## Provenance", "", ...provenance.map(([key, value]) => `- ${key}: ${value}`), "");
  return lines.join("\n");
}
