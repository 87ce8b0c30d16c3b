// Optional native BLAS addon (native/blas.c): builds with node-gyp against the system OpenBLAS
// (`apt-get install libopenblas-dev`), or on macOS against Apple's Accelerate framework (binding.gyp's OS
// condition). A failure is reported and never fails the build: the trainer then uses the WebAssembly kernel.
// Set SELFALIGN_SKIP_NATIVE=1 to skip.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const addon = join("native", "build", "Release", "blas.node");
if (process.env.SELFALIGN_SKIP_NATIVE === "1") {
  console.log("build-native: skipped (SELFALIGN_SKIP_NATIVE=1)");
  process.exit(0);
}
const gyp = join("node_modules", "node-gyp", "bin", "node-gyp.js");
if (!existsSync(gyp)) {
  console.log(`build-native: skipped, ${gyp} is missing (npm install the dev dependencies)`);
  process.exit(0);
}
// Use the headers of the running Node when they are installed system-wide, so node-gyp needs no download.
const args = [gyp, "rebuild", "-C", "native"];
if (existsSync("/usr/include/node/node_api.h")) args.push("--nodedir=/usr");
const result = spawnSync(process.execPath, args, { encoding: "utf8" });
if (result.status !== 0 || !existsSync(addon)) {
  const tail = `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-8).join("\n");
  console.log(
    `build-native: the BLAS addon did not build (${process.platform === "darwin" ? "are the Xcode command line tools installed? `xcode-select --install`" : "is libopenblas-dev installed?"}); using WebAssembly.\n${tail}`,
  );
  process.exit(0);
}
try {
  const blas = createRequire(import.meta.url)(join(process.cwd(), addon));
  const c = new Float32Array([0]);
  blas.sgemm(false, false, 1, 1, 1, 1, new Float32Array([2]), new Float32Array([3]), 0, c);
  if (c[0] !== 6) throw new Error(`2·3 gave ${c[0]}`);
  const library = process.platform === "darwin" ? "Accelerate" : "OpenBLAS";
  console.log(`build-native: built ${addon} (${library}, ${blas.getThreads()} threads by default)`);
} catch (error) {
  console.log(`build-native: ${addon} built but does not work: ${error.message}; using WebAssembly.`);
}
