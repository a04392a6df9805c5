import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const alias = {
  // The portal's data layer is marked server-only (it must never reach a browser bundle); in tests it runs in Node.
  "server-only": fileURLToPath(new URL("./e2e/support/server-only.ts", import.meta.url)),
};

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // Tests' agents are enrolled moments before they earn: no probation unless a test sets one (risk/probation.ts).
    env: { AGENT_PROBATION_HOURS: "0" },
    hookTimeout: 120_000,
    pool: "forks",
    projects: [
      {
        // Module and database-level tests: independent files, two at a time, before the whole-stack ones.
        resolve: { alias },
        extends: true,
        test: {
          name: "units",
          include: [
            "protocol/test/**/*.test.ts",
            "gateway/src/**/*.test.ts",
            "prisma/test/**/*.test.ts",
            "mock-provider/**/*.test.ts",
            "web/lib/**/*.test.ts",
            "scripts/**/*.test.ts",
          ],
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        // Whole-stack tests start several processes each and measure time (streams, limits, fault loops): one file
        // at a time, after the units, so no file's timing depends on another's load.
        resolve: { alias },
        extends: true,
        test: {
          name: "stack",
          include: ["e2e/stack/**/*.test.ts"],
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
