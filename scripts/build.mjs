// Build: TypeScript -> dist/, then every WebAssembly kernel compiled from source (no binaries are committed).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";

const run = (cmd, args) => execFileSync(cmd, args, { stdio: "inherit" });
run("node_modules/.bin/tsc", ["-p", "tsconfig.json"]);

// WebAssembly kernels (AssemblyScript, src/**/assembly/*.ts -> dist/**/*.wasm), then the optional native addon,
// which never fails the build (the trainer falls back to WebAssembly without it).
run(process.execPath, ["scripts/build-wasm.mjs"]);
run(process.execPath, ["scripts/build-native.mjs"]);
if (!existsSync("dist/cli/cli.js")) throw new Error("build did not produce dist/cli/cli.js");
