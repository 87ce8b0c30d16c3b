import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Engines (llama.cpp contexts, worker pools) are heavy; 2 cores => at most 2 files at once.
    maxWorkers: 2,
    minWorkers: 1,
    pool: "forks",
  },
});
