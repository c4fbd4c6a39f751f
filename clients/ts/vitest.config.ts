import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
    setupFiles: ["fake-indexeddb/auto"],
    pool: "threads",
    maxWorkers: 2,
    testTimeout: 10_000,
  },
});
