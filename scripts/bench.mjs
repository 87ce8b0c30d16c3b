// npm run bench [-- name ...]: run benchmarks in bench/ (all, or the named ones); each prints its own figures.
import { execFileSync } from "node:child_process";
import { readdirSync } from "node:fs";

const all = readdirSync("bench")
  .filter((file) => file.endsWith(".ts"))
  .map((file) => file.slice(0, -3))
  .sort();
const names = process.argv.slice(2).length ? process.argv.slice(2) : all;
for (const name of names) {
  if (!all.includes(name)) throw new Error(`no benchmark "${name}"; available: ${all.join(", ")}`);
  console.log(`\n== bench/${name}.ts`);
  execFileSync(process.execPath, ["--import", "tsx", `bench/${name}.ts`], { stdio: "inherit" });
}
