import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["protocol/test/**/*.test.ts", "gateway/src/**/*.test.ts", "prisma/test/**/*.test.ts", "mock-provider/**/*.test.ts", "e2e/stack/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: "forks",
  },
});
