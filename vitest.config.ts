import { fileURLToPath } from "node:url";
import { BaseSequencer, type TestSpecification } from "vitest/node";
import { defineConfig } from "vitest/config";

const alias = {
  // The portal's data layer is marked server-only (it must never reach a browser bundle); in tests it runs in Node.
  "server-only": fileURLToPath(new URL("./e2e/support/server-only.ts", import.meta.url)),
};

/** Whole-stack files that may run two at a time (see the "stack-pairs" project); every other e2e/stack file runs alone. */
const STACK_PAIRS = [
  "admin_cli",
  "agent_forwarding",
  "agent_production",
  "archive",
  "batches",
  "billing",
  "billing_bounds",
  "canary",
  "content_compliance",
  "deferred",
  "demo",
  "egress",
  "endpoint_check",
  "files",
  "fuzz",
  "gateway_processes",
  "gateways_context",
  "handshake",
  "images",
  "linked_accounts",
  "message_batches",
  "observability",
  "readme",
  "rebuild_from_edge",
  "routing",
  "sdk",
  "stored_responses",
  "usage_divergence",
];

/**
 * Files that take minutes (a portal build each, the archive's runs, the sign-in throttle's scrypt hashes, migrations
 * through the Wasm engine): they start first in their project, so it does not end with one of them running alone.
 * Without timings cached from an earlier run (a clean clone), vitest starts the largest files first, and these are
 * small (docs/ARCHITECTURE.md, "Tests and CI time").
 */
const LONG_FIRST = [
  "e2e/stack/demo.test.ts",
  "e2e/stack/readme.test.ts",
  "e2e/stack/archive.test.ts",
  "web/lib/data/accounts.test.ts",
  "e2e/stack/admin_cli.test.ts",
  "prisma/test/migrations.test.ts",
  "scripts/import_rules.test.ts",
];

/** Vitest's order (cached durations, longest first; else the largest file first), with LONG_FIRST ahead of the rest. */
class LongFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => {
      const i = LONG_FIRST.findIndex((name) => f.moduleId.endsWith(`/${name}`));
      return i === -1 ? LONG_FIRST.length : i;
    };
    return (await super.sort(files)).sort((a, b) => rank(a) - rank(b));
  }
}

export default defineConfig({
  test: {
    testTimeout: 60_000,
    // Tests' agents are enrolled moments before they earn: no probation unless a test sets one (risk/probation.ts).
    env: { AGENT_PROBATION_HOURS: "0" },
    hookTimeout: 120_000,
    pool: "forks",
    sequence: { sequencer: LongFirstSequencer },
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
        // Whole-stack files whose claims are about what happens, not how fast: exact charges and receipts, errors in
        // the API's shape, who a request reaches, what a log or a database holds, processes restarted. Each starts its
        // own processes on ports the kernel hands out, its own database and Redis prefix, so two run side by side (on a
        // 2-core CI machine they wait on timers, PostgreSQL and each other's processes more than they compute). Any
        // time they assert is a lower bound (a stall lasted at least its timeout) or a deadline minutes wide. `demo`
        // and `readme` build the portal (CPU for a minute or two): their only time bounds are a stop within 12/15 s.
        resolve: { alias },
        extends: true,
        test: {
          name: "stack-pairs",
          include: STACK_PAIRS.map((f) => `e2e/stack/${f}.test.ts`),
          maxWorkers: 2,
          sequence: { groupOrder: 1 },
        },
      },
      {
        // Whole-stack files that measure time or rates, or inject faults in loops: one file at a time, after the
        // others, so no file's timing depends on another's load. Streams and memory (tunnel), rates and buckets
        // (agent_rate, limits, limits_cluster, operator's lookups per second), latency bounds (gateways' 100 ms cancel,
        // money's 1 s price push, errors' key revoked within 1 s, heartbeat's 800–3,000 ms), idle and head timeouts
        // of 1.5 s (end_causes), breakers and their cool-down (failover), retry windows (identity), fault loops
        // (edge_ledger, agent_update, ledger_outage).
        resolve: { alias },
        extends: true,
        test: {
          name: "stack",
          include: ["e2e/stack/**/*.test.ts"],
          exclude: STACK_PAIRS.map((f) => `e2e/stack/${f}.test.ts`),
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
    ],
  },
});
