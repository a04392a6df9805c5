import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: {
    // The portal's data layer is marked server-only (it must never reach a browser bundle); in tests it runs in Node.
    alias: { "server-only": fileURLToPath(new URL("./e2e/support/server-only.ts", import.meta.url)) },
  },
  test: {
    include: [
      "protocol/test/**/*.test.ts",
      "gateway/src/**/*.test.ts",
      "prisma/test/**/*.test.ts",
      "mock-provider/**/*.test.ts",
      "e2e/stack/**/*.test.ts",
      "web/lib/**/*.test.ts",
      "scripts/**/*.test.ts",
    ],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    pool: "forks",
  },
});
