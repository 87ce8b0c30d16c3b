// Build: TypeScript -> dist/, then every WebAssembly kernel compiled from source (no binaries are committed).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

const run = (cmd, args) => execFileSync(cmd, args, { stdio: "inherit" });
run("node_modules/.bin/tsc", ["-p", "tsconfig.json"]);

// AssemblyScript sources live in src/**/assembly/*.ts and compile to dist/<same path>.wasm
function findAssembly(dir, out = []) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === "assembly") {
        for (const f of readdirSync(p)) if (f.endsWith(".ts")) out.push(join(p, f));
      } else findAssembly(p, out);
    }
  }
  return out;
}
for (const source of findAssembly("src")) {
  const target = source.replace(/^src/, "dist").replace(/\.ts$/, ".wasm");
  mkdirSync(join(target, ".."), { recursive: true });
  run("node_modules/.bin/asc", [
    source,
    "--outFile",
    target,
    "-O3",
    "--enable",
    "simd",
    "--enable",
    "threads",
    "--runtime",
    "stub",
    "--noAssert",
    "--importMemory",
    "--sharedMemory",
    "--initialMemory",
    "1",
    "--maximumMemory",
    "65536",
  ]);
}
if (!existsSync("dist/cli/cli.js")) throw new Error("build did not produce dist/cli/cli.js");
