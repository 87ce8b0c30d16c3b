// Compiles every AssemblyScript source src/**/assembly/*.ts to dist/<same path>.wasm (no binaries are committed).
// Run by scripts/build.mjs; also runnable alone (`node scripts/build-wasm.mjs`) to rebuild only the kernels.
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

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
  // simd: f32x4 micro-kernels; threads + importMemory + sharedMemory: one memory shared by worker threads;
  // runtime stub: no GC (the kernels never allocate); noAssert: no bounds asserts in the hot loops.
  execFileSync(
    "node_modules/.bin/asc",
    [
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
    ],
    { stdio: "inherit" },
  );
}
