/** `selfalign report`: one self-contained HTML file (data, Chart.js and the page script inlined; opens from disk). */
import { readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { packageRoot } from "../package-root.js";
import type { StageRegistry } from "../pipeline/stage-registry.js";
import { collectReportData, type ReportData } from "./report-data.js";

const require = createRequire(import.meta.url);

/** Make text safe inside a <script> element. */
function scriptSafe(source: string): string {
  return source.replace(/<\/(script)/gi, "<\\/$1").replace(/<!--/g, "<\\!--");
}

const escapeHtml = (value: string) =>
  value.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

const styles = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { padding: 16px 24px; background: #1d2330; color: #fff; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .meta { opacity: .75; font-size: 12px; }
main { padding: 16px 24px; display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
section.panel { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 12px 16px; overflow: auto; }
section.panel.wide { grid-column: 1 / -1; }
section.panel.empty .chart, section.panel.empty table { display: none; }
section.panel.empty::after { content: "nothing recorded yet"; color: #8a93a3; }
h2 { font-size: 16px; margin: 0 0 8px; }
.chart { position: relative; height: 260px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border-bottom: 1px solid #eef0f3; padding: 3px 6px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.heat td { text-align: center; }
.controls { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 8px; }
.controls input { flex: 1 1 240px; padding: 4px 8px; }
#results { list-style: none; margin: 0; padding: 0; max-height: 420px; overflow: auto; border: 1px solid #eef0f3; }
#results li { padding: 4px 8px; border-bottom: 1px solid #eef0f3; cursor: pointer; display: flex; gap: 8px; }
#results li:hover { background: #eef4ff; }
#results li.rejected .badge { background: #fde7e1; color: #9b2c10; }
.badge { background: #e1f5ec; color: #146c47; border-radius: 4px; padding: 0 6px; font-size: 12px; white-space: nowrap; }
#detail .columns { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
#detail pre { white-space: pre-wrap; word-break: break-word; background: #f6f7f9; padding: 8px; border-radius: 6px; max-height: 400px; overflow: auto; }
#detail .meta { color: #5b6b7c; font-size: 12px; margin: 8px 0; }
`;

/** Build the report HTML from collected data. */
export async function renderReport(data: ReportData): Promise<string> {
  const chartSource = await readFile(join(dirname(require.resolve("chart.js")), "chart.umd.min.js"), "utf8");
  const clientSource = await readFile(join(packageRoot(), "src", "report", "client", "report-client.js"), "utf8");
  const { records, ...aggregates } = data;
  const encodedRecords = gzipSync(JSON.stringify(records), { level: 9 }).toString("base64");
  const info = [
    data.run.createdAt ? `created ${data.run.createdAt}` : undefined,
    data.run.constitutionHash ? `constitution ${data.run.constitutionHash.slice(0, 12)}` : undefined,
    `${records.length} records`,
    `report generated ${data.generatedAt}`,
  ].filter(Boolean);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>selfalign report: ${escapeHtml(data.run.name)}</title>
<style>${styles}</style>
</head>
<body>
<header><h1>selfalign report: ${escapeHtml(data.run.name)}</h1><div class="meta">${escapeHtml(info.join(" · "))}</div></header>
<main>
<section class="panel wide" id="funnel" data-testid="funnel"><h2>Funnel: generated → kept, rejects by filter</h2>
<div class="chart"><canvas id="funnel-chart"></canvas></div>
<table><thead><tr><th>stage</th><th>generated</th><th>kept</th><th>rejected</th><th>rejected by filter</th><th>tokens (prompt / completion)</th></tr></thead><tbody></tbody></table></section>
<section class="panel" id="principles" data-testid="principles"><h2>Principle usage in internal thoughts</h2>
<div class="chart"><canvas id="principles-chart"></canvas></div>
<table><thead><tr><th>principle</th><th>citations</th></tr></thead><tbody></tbody></table>
<div id="principles-by-type"></div></section>
<section class="panel" id="red-team" data-testid="red-team"><h2>Red-team coverage: question types × topics</h2>
<table><thead><tr><th>question type</th><th>topics</th><th>questions</th><th>topics (questions)</th></tr></thead><tbody></tbody></table></section>
<section class="panel" id="diversity" data-testid="diversity"><h2>Instruction diversity: root verbs and their objects</h2>
<div class="chart"><canvas id="diversity-chart"></canvas></div>
<table><thead><tr><th>verb</th><th>instructions</th><th>top direct objects</th></tr></thead><tbody></tbody></table>
<p class="note">Heuristic: first imperative word and the first content word after it; ${data.diversity.withoutVerb} of ${data.diversity.total} prompts open with a question or statement instead.</p></section>
<section class="panel" id="lengths" data-testid="lengths"><h2>Length distributions (words)</h2>
<div class="chart"><canvas id="lengths-chart"></canvas></div></section>
<section class="panel" id="training" data-testid="training"><h2>Training loss</h2>
<div class="chart"><canvas id="loss-chart"></canvas></div></section>
<section class="panel" id="held-out" data-testid="held-out"><h2>Held-out evaluation during training (accuracy of pair objectives)</h2>
<div class="chart"><canvas id="held-out-chart"></canvas></div></section>
<section class="panel wide" id="rl" data-testid="rl"><h2>RL (PPO): mean reward, KL to the reference and response length per step</h2>
<div class="chart"><canvas id="rl-reward-chart"></canvas></div>
<div class="chart"><canvas id="rl-kl-chart"></canvas></div>
<div class="chart"><canvas id="rl-length-chart"></canvas></div></section>
<section class="panel" id="pair-training" data-testid="pair-training"><h2>Pair objectives (DPO, reward model): chosen-minus-rejected margin and accuracy</h2>
<div class="chart"><canvas id="pair-training-chart"></canvas></div></section>
<section class="panel wide" id="salmon-judgments" data-testid="salmon-judgments"><h2>SALMON judge: agreement of the two orders and scores per principle</h2>
<div class="chart"><canvas id="salmon-scores-chart"></canvas></div>
<table><thead><tr><th>principle</th><th>pairs</th><th>orders agree</th><th>output 1 / output 2</th><th>s12 (p10, median, p90)</th><th>s21 (p10, median, p90)</th></tr></thead><tbody></tbody></table></section>
<section class="panel" id="salmon-labels" data-testid="salmon-labels"><h2>SALMON labels after aggregation</h2>
<table><tbody></tbody></table></section>
<section class="panel" id="evaluation" data-testid="evaluation"><h2>Evaluation</h2>
<table><thead><tr><th>file</th><th>metric</th><th>value</th></tr></thead><tbody></tbody></table></section>
<section class="panel wide" id="rounds" data-testid="rounds" hidden><h2>Rounds: figures, kept by filter, prompts</h2>
<div class="chart"><canvas id="rounds-chart"></canvas></div>
<table id="round-figures"><thead><tr><th>round</th></tr></thead><tbody></tbody></table>
<table id="round-stages"><thead><tr><th>round</th><th>stage</th><th>in</th><th>kept</th><th>kept rate</th><th>rejected by filter</th></tr></thead><tbody></tbody></table>
<div id="round-prompts"></div></section>
<section class="panel wide" id="ratings" data-testid="ratings" hidden><h2>Self-assessment: score histograms and agreement of the two ratings</h2>
<div class="chart"><canvas id="ratings-chart"></canvas></div>
<table id="agreement"><thead><tr><th>round</th><th>rated on both</th><th>same score</th><th>within 1</th><th>correlation</th><th>unreadable ratings</th></tr></thead><tbody></tbody></table>
<div id="agreement-matrix"></div></section>
<section class="panel wide" id="browser" data-testid="browser"><h2>Records</h2>
<div class="controls">
<input id="search" type="search" placeholder="search prompts, thoughts, answers, ids">
<select id="filter-stage"><option value="">all stages</option></select>
<select id="filter-status"><option value="">kept and rejected</option><option value="kept">kept</option><option value="rejected">rejected</option></select>
<select id="filter-reason"><option value="">any filter</option></select>
<select id="filter-principle"><option value="">any principle</option></select>
<select id="filter-type"><option value="">any red-team type</option></select>
<select id="filter-round"><option value="">all rounds</option></select>
</div>
<div id="result-count"></div>
<ul id="results"></ul>
<button id="show-more" hidden>show more</button>
<div id="detail" hidden></div>
</section>
</main>
<script type="application/json" id="report-data">${scriptSafe(JSON.stringify(aggregates))}</script>
<script type="text/plain" id="report-records">${encodedRecords}</script>
<script>${scriptSafe(chartSource)}</script>
<script>${scriptSafe(clientSource)}</script>
</body>
</html>
`;
}

export interface WriteReportOptions {
  runDir: string;
  /** The stages whose folders the run holds (default: the built-in registry). */
  registry?: StageRegistry;
  /** Default: `<runDir>/report.html`. */
  out?: string;
}

export interface WriteReportResult {
  path: string;
  bytes: number;
  records: number;
}

/** Collect a run's data and write its report. */
export async function writeReport(options: WriteReportOptions): Promise<WriteReportResult> {
  const data = await collectReportData(options.runDir, options.registry);
  const html = await renderReport(data);
  const path = options.out ?? `${options.runDir.replace(/\/+$/, "")}/report.html`;
  await writeFile(path, html);
  return { path, bytes: Buffer.byteLength(html), records: data.records.length };
}
