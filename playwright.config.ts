import { defineConfig } from "@playwright/test";

const WEB_PORT = 13000;
const GATEWAY_PORT = 18787;

export default defineConfig({
  testDir: "e2e/browser",
  outputDir: "test-results/browser",
  timeout: 60_000,
  retries: 0,
  // One hub serves every test (counts of agents, accounts): files run one after another.
  workers: 1,
  reporter: [["list"]],
  projects: [
    // The first-run page works only while the hub has no administrator: that file runs before every other.
    { name: "first-run", testMatch: /first-hour\.spec\.ts$/ },
    { name: "journeys", testIgnore: /first-hour\.spec\.ts$/, dependencies: ["first-run"] },
  ],
  use: {
    baseURL: `http://127.0.0.1:${WEB_PORT}`,
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: {
    // The README's zero-configuration start (embedded PostgreSQL, no Redis) in a throwaway data folder.
    command: "rm -rf .data/playwright && npx tsx scripts/start.ts",
    url: `http://127.0.0.1:${WEB_PORT}`,
    // A fresh checkout builds the portal first (about a minute; more on a busy machine).
    timeout: 300_000,
    reuseExistingServer: false,
    env: {
      DATA_DIR: ".data/playwright",
      WEB_PORT: String(WEB_PORT),
      GATEWAY_PORT: String(GATEWAY_PORT),
      AGENT_PORT: "18788",
      // The owner journey's agent calls the mock provider (--dev-upstream): a development hub admits it.
      HUB_DEVELOPMENT: "1",
      // Journeys enroll an agent and request a payout minutes later: no probation (risk/probation.ts).
      AGENT_PROBATION_HOURS: "0",
      // An agent's first quality canary of each chat model right after it connects (canaries.spec.ts reads them);
      // the interval stays 6 h, so no journey sees a second one.
      CANARY_FIRST_DELAY_MS_MAX: "0",
      CANARY_TICK_MS: "1000",
      ADMIN_PORT: "18789",
      DATABASE_URL: "",
    },
    stdout: "pipe",
    stderr: "pipe",
  },
});
