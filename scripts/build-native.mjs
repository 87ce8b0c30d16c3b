// The optional native addons, built with node-gyp. A failure is reported and never fails the build: each has a
// fallback. Set SELFALIGN_SKIP_NATIVE=1 to skip both.
//  - native/blas.c: sgemm over the system OpenBLAS (`apt-get install libopenblas-dev`), or on macOS Apple's
//    Accelerate framework (binding.gyp's OS condition). Without it the trainer uses the WebAssembly kernel.
//  - native/threadpool: a persistent ggml threadpool for node-llama-cpp's contexts, compiled against node-llama-cpp's
//    own addon headers and the llama.cpp headers of its source bundle (read with git, once, into the cache). Without
//    it each multi-threaded decode call starts its threads anew.
import { spawnSync } from "node:child_process";
import { existsSync, realpathSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

if (process.env.SELFALIGN_SKIP_NATIVE === "1") {
  console.log("build-native: skipped (SELFALIGN_SKIP_NATIVE=1)");
  process.exit(0);
}
const gyp = join("node_modules", "node-gyp", "bin", "node-gyp.js");
if (!existsSync(gyp)) {
  console.log(`build-native: skipped, ${gyp} is missing (npm install the dev dependencies)`);
  process.exit(0);
}

/** node-gyp rebuild in `dir` (with gyp variables); undefined on success, else the last lines of its output. */
function nodeGyp(dir, variables = {}) {
  // Use the headers of the running Node (beside its binary, as official builds, nvm and Debian's nodejs install them,
  // or system-wide), so node-gyp needs no download.
  const args = [gyp, "rebuild", "-C", dir];
  const nodeDir = [dirname(dirname(realpathSync(process.execPath))), "/usr"].find((candidate) =>
    existsSync(join(candidate, "include", "node", "node_api.h")),
  );
  if (nodeDir !== undefined) args.push(`--nodedir=${nodeDir}`);
  const defines = Object.entries(variables).map(([name, value]) => `-D${name}=${value}`);
  if (defines.length > 0) args.push("--", ...defines);
  const result = spawnSync(process.execPath, args, { encoding: "utf8" });
  if (result.status === 0) return undefined;
  return `${result.stdout ?? ""}${result.stderr ?? ""}`.trim().split("\n").slice(-8).join("\n");
}

function buildBlas() {
  const addon = join("native", "build", "Release", "blas.node");
  const failure = nodeGyp("native");
  if (failure !== undefined || !existsSync(addon)) {
    console.log(
      `build-native: the BLAS addon did not build (${process.platform === "darwin" ? "are the Xcode command line tools installed? `xcode-select --install`" : "is libopenblas-dev installed?"}); using WebAssembly.\n${failure ?? ""}`,
    );
    return;
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
}

async function buildThreadpool() {
  const addon = join("native", "threadpool", "build", "Release", "threadpool.node");
  const skip = (why) =>
    console.log(`build-native: no persistent threadpool (${why}); decoding starts its threads per call.`);
  if (process.platform === "win32") return skip("not built on Windows");
  let headers;
  try {
    // dist/ is built before this script runs (scripts/build.mjs).
    const { openLlamaCppSource } = await import("../dist/gguf/llama-cpp-source.js");
    const source = await openLlamaCppSource();
    for (const folder of ["include", "ggml/include"])
      for (const file of await source.list(folder)) {
        if (!file.endsWith(".h")) continue;
        const path = `${folder}/${file}`;
        // extract() writes <cache>/<commit>/<path>: the tree's root is what precedes the path.
        headers = (await source.extract(path)).slice(0, -path.length - 1);
      }
  } catch (error) {
    return skip(`llama.cpp's headers could not be read from node-llama-cpp's source bundle: ${error.message}`);
  }
  const nodeLlamaCpp = dirname(dirname(createRequire(import.meta.url).resolve("node-llama-cpp")));
  const failure = nodeGyp(join("native", "threadpool"), {
    node_llama_cpp_addon: join(nodeLlamaCpp, "llama", "addon"),
    llama_headers: headers,
  });
  if (failure !== undefined || !existsSync(addon)) return skip(`the addon did not build\n${failure ?? ""}`);
  console.log(`build-native: built ${addon}`);
}

buildBlas();
await buildThreadpool();
