/**
 * llama.cpp's own server, built once from the source bundle inside node-llama-cpp (the same llama.cpp release its
 * prebuilt binaries come from) and cached outside the repository under SELFALIGN_CACHE_DIR, for benchmarks that
 * compare the embedded engine with it. CPU only, static, no web UI, no network features, and the CPU flags of the
 * prebuilt library node-llama-cpp loads on x64 here (AVX2/FMA/F16C), so both run the same kernels.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { readEnv } from "../../src/config/env.js";

/** The llama.cpp release node-llama-cpp bundles, and where its source bundle is. */
function bundledRelease(): { tag: string; bundle: string } {
  // The package exports no package.json: find its root from the entry point (dist/index.js).
  const llamaDir = join(dirname(createRequire(import.meta.url).resolve("node-llama-cpp")), "..", "llama");
  const info = JSON.parse(readFileSync(join(llamaDir, "llama.cpp.info.json"), "utf8")) as { tag: string };
  return { tag: info.tag, bundle: join(llamaDir, "gitRelease.bundle") };
}

function run(command: string, args: string[], cwd?: string): void {
  const result = spawnSync(command, args, { cwd, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(" ")} failed: ${(result.stderr ?? "").trim().split("\n").slice(-6).join("\n")}`,
    );
}

/** Path of the llama-server binary, building it first when it is not cached (minutes, on two cores). */
export function llamaServerBinary(log: (line: string) => void = console.log): string {
  const { tag, bundle } = bundledRelease();
  const source = join(readEnv().cacheDir, `llama.cpp-${tag}`);
  const binary = join(source, "build", "bin", "llama-server");
  if (existsSync(binary)) return binary;
  log(`building llama.cpp ${tag}'s llama-server from ${bundle} into ${source} (once; several minutes)`);
  if (!existsSync(join(source, "CMakeLists.txt"))) run("git", ["clone", "--quiet", bundle, source]);
  const x64 = process.arch === "x64";
  run(
    "cmake",
    [
      "-S",
      ".",
      "-B",
      "build",
      "-DCMAKE_BUILD_TYPE=Release",
      "-DBUILD_SHARED_LIBS=OFF",
      "-DLLAMA_BUILD_TESTS=OFF",
      "-DLLAMA_BUILD_EXAMPLES=OFF",
      "-DLLAMA_BUILD_APP=OFF",
      "-DLLAMA_BUILD_UI=OFF",
      "-DLLAMA_USE_PREBUILT_UI=OFF",
      "-DLLAMA_OPENSSL=OFF",
      ...(x64
        ? ["-DGGML_NATIVE=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_BMI2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON"]
        : []),
    ],
    source,
  );
  run("cmake", ["--build", "build", "--target", "llama-server", "-j", "2"], source);
  if (!existsSync(binary)) throw new Error(`the build finished but ${binary} is missing`);
  return binary;
}

export interface LlamaServer {
  url: string;
  close(): Promise<void>;
}

/** Start llama-server on `model` and wait until it answers /health. */
export async function startLlamaServer(binary: string, model: string, args: string[]): Promise<LlamaServer> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child: ChildProcess = spawn(binary, ["-m", model, "--host", "127.0.0.1", "--port", String(port), ...args], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk) => {
    stderr = (stderr + String(chunk)).slice(-4000);
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 300_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`llama-server exited (${child.exitCode}): ${stderr.slice(-1000)}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.ok) break;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`llama-server did not become healthy in 300 s: ${stderr.slice(-1000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
      }),
  };
}
