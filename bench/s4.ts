/**
 * `npm run bench:s4`: S4 alone (bulk beside streams, bench/bulk.ts) on the stack `npm run bench` starts, direct
 * then Wellspring, `BENCH_S4_ROUNDS` times alternated (default 2), and what the gateway's and the agent's memory
 * does afterwards: RSS at the start, right after the last round and after `BENCH_S4_IDLE_S` seconds of rest
 * (default 30). A minute or two instead of the whole benchmark's quarter hour, for work on the tunnel's bulk path.
 * Writes bench/results/s4.json; prints each round as it goes.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startStack } from "../e2e/stack/harness.ts";
import { processTree } from "../e2e/stack/procfs.ts";
import { BULK_BYTES, runS4, type S4Figures } from "./bulk.ts";
import { Generator } from "./generator.ts";
import { mib, rss, sleep, type Target } from "./lib.ts";

const ROUNDS = Number(process.env.BENCH_S4_ROUNDS ?? 2);
const IDLE_S = Number(process.env.BENCH_S4_IDLE_S ?? 30);

/** Summed RSS of each process tree now, MiB. */
async function rssNow(groups: Record<string, number[]>): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [k, pids] of Object.entries(groups)) {
    let sum = 0;
    for (const pid of pids) sum += await rss(pid);
    out[k] = mib(sum);
  }
  return out;
}

const gen = new Generator();
const stack = await startStack({
  concurrentStreamsMax: 1024,
  gatewayEnv: { REQUEST_BODY_BYTES_MAX: String(BULK_BYTES + 1024 * 1024), BILLING_LEASE_IDLE_RELEASE_MS: "2000" },
});
const rounds: { path: Target["name"]; figures: S4Figures }[] = [];
let memory: { start: Record<string, number>; afterRun: Record<string, number>; afterIdle: Record<string, number>; idleSeconds: number };
try {
  const processes = { gateway: await processTree(stack.gateway.child.pid!), agent: await processTree(stack.agent.child.pid!) };
  const start = await rssNow(processes);
  const targets: Target[] = [
    { name: "direct", origin: stack.mock.origin },
    { name: "wellspring", origin: stack.baseUrl },
  ];
  for (let i = 0; i < ROUNDS; i++) {
    for (const t of targets) {
      const figures = await runS4(gen, t, stack.apiKey, t.name === "wellspring" ? processes : {});
      rounds.push({ path: t.name, figures });
      console.error(`S4 round ${i + 1} ${t.name}: ${JSON.stringify(figures)}`);
    }
  }
  const afterRun = await rssNow(processes);
  await sleep(IDLE_S * 1000);
  memory = { start, afterRun, afterIdle: await rssNow(processes), idleSeconds: IDLE_S };
  console.error(`RSS MiB: ${JSON.stringify(memory)}`);
} finally {
  await stack.close();
  await gen.close();
}
const result = { at: new Date().toISOString(), rounds, memory };
await mkdir(join(import.meta.dirname, "results"), { recursive: true });
await writeFile(join(import.meta.dirname, "results", "s4.json"), JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));
process.exit(0);
