/**
 * `npm run bench:soak`: does memory come back, and does it stay flat under steady load?
 *
 * 1. A burst: `BENCH_SOAK_BURST` SSE streams at once (default 1,000, S3's top level, one round each), then a
 *    rest of `BENCH_SOAK_REST_S` seconds (default 30): RSS of the gateway and the agent before, right after and
 *    after the rest — what the burst left behind.
 * 2. A soak: `BENCH_SOAK_MINUTES` (default 10) of steady load — `BENCH_SOAK_STREAMS` SSE streams open at any time
 *    (default 100, run back to back) beside `BENCH_SOAK_CALLERS` clients of small calls (default 4, back to back);
 *    RSS of both processes sampled every `BENCH_SOAK_SAMPLE_S` seconds (default 10). Its slope (least squares,
 *    MiB per minute) over the samples after the first fifth (warm-up) says whether it is flat: within
 *    ±FLAT_MIB_PER_MINUTE.
 *
 * Writes bench/results/soak.json; `npm run bench` puts the last one in docs/performance.md (report.ts).
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { startStack } from "../e2e/stack/harness.ts";
import { processTree } from "../e2e/stack/procfs.ts";
import { Generator } from "./generator.ts";
import { mib, rss, sleep, type Target } from "./lib.ts";

const BURST = Number(process.env.BENCH_SOAK_BURST ?? 1000);
const REST_S = Number(process.env.BENCH_SOAK_REST_S ?? 30);
const MINUTES = Number(process.env.BENCH_SOAK_MINUTES ?? 10);
const STREAMS = Number(process.env.BENCH_SOAK_STREAMS ?? 100);
const CALLERS = Number(process.env.BENCH_SOAK_CALLERS ?? 4);
const SAMPLE_S = Number(process.env.BENCH_SOAK_SAMPLE_S ?? 10);
/** A slope within ± this, MiB per minute, is flat. */
export const FLAT_MIB_PER_MINUTE = 1;

/** RSS of the gateway's and the agent's process trees, MiB. */
export interface ProcessMiB {
  gateway: number;
  agent: number;
}

export interface GatewayHeap {
  heapUsed: number;
  heapTotal: number;
  external: number;
}

/** The gateway's heap figures from its Prometheus metrics (prom-client's defaults), MiB. */
async function gatewayHeap(adminOrigin: string): Promise<GatewayHeap> {
  const text = await (await fetch(`${adminOrigin}/metrics`)).text();
  const v = (name: string) => mib(Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN));
  return { heapUsed: v("nodejs_heap_size_used_bytes"), heapTotal: v("nodejs_heap_size_total_bytes"), external: v("nodejs_external_memory_bytes") };
}

export interface SoakSample {
  atS: number;
  gatewayMiB: number;
  agentMiB: number;
}

export interface SoakResult {
  at: string;
  burst: {
    streams: number;
    restSeconds: number;
    before: ProcessMiB;
    after: ProcessMiB;
    afterRest: ProcessMiB;
    /** The gateway's V8 heap (used, total) and external memory at the same three moments, MiB (its /metrics). */
    gatewayHeap: { before: GatewayHeap; after: GatewayHeap; afterRest: GatewayHeap };
  };
  soak: {
    minutes: number;
    streams: number;
    callers: number;
    sampleSeconds: number;
    samples: SoakSample[];
    streamsRun: number;
    callsRun: number;
    errors: number;
    /** Least-squares slope after the warm-up, MiB per minute. */
    slopeMiBPerMinute: { gateway: number; agent: number };
    flat: boolean;
  };
}

/** Least-squares slope of y over x. */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

async function rssNow(groups: { gateway: number[]; agent: number[] }): Promise<ProcessMiB> {
  const sum = async (pids: number[]) => {
    let total = 0;
    for (const pid of pids) total += await rss(pid);
    return mib(total);
  };
  return { gateway: await sum(groups.gateway), agent: await sum(groups.agent) };
}

if (import.meta.filename === process.argv[1]) {
  const gen = new Generator();
  const stack = await startStack({ concurrentStreamsMax: 1024, gatewayEnv: { BILLING_LEASE_IDLE_RELEASE_MS: "2000" } });
  let result: SoakResult;
  try {
    const processes = { gateway: await processTree(stack.gateway.child.pid!), agent: await processTree(stack.agent.child.pid!) };
    const target: Target = { name: "wellspring", origin: stack.baseUrl };
    // Warm-up: the processes' code and pools as a steady load leaves them, before the first reading.
    await gen.call("load", stack.baseUrl, [stack.apiKey, stack.apiKey], 100);
    const before = await rssNow(processes);
    const heapBefore = await gatewayHeap(stack.gateway.adminOrigin);
    const burst = BURST > 0 ? await gen.call("sseLoad", target, stack.apiKey, BURST, 1, "soak.burst") : [];
    const after = await rssNow(processes);
    const heapAfter = await gatewayHeap(stack.gateway.adminOrigin);
    await sleep(REST_S * 1000);
    const afterRest = await rssNow(processes);
    const gatewayHeaps = { before: heapBefore, after: heapAfter, afterRest: await gatewayHeap(stack.gateway.adminOrigin) };
    console.error(
      `burst of ${burst.length} streams: RSS MiB before ${JSON.stringify(before)}, after ${JSON.stringify(after)}, after ${REST_S} s ${JSON.stringify(afterRest)}; gateway heap ${JSON.stringify(gatewayHeaps)}`,
    );

    const started = performance.now();
    const endAt = started + MINUTES * 60_000;
    const samples: SoakSample[] = [];
    const sampling = (async () => {
      while (performance.now() < endAt) {
        const r = await rssNow(processes);
        samples.push({ atS: +((performance.now() - started) / 1000).toFixed(1), gatewayMiB: r.gateway, agentMiB: r.agent });
        console.error(`soak ${samples.at(-1)!.atS} s: gateway ${r.gateway} MiB, agent ${r.agent} MiB`);
        await sleep(Math.min(SAMPLE_S * 1000, Math.max(0, endAt - performance.now())));
      }
    })();
    const steady = await gen.call("soakLoad", target, stack.apiKey, STREAMS, CALLERS, endAt - started);
    await sampling;
    const warm = samples.filter((s) => s.atS >= (MINUTES * 60) / 5);
    const xs = warm.map((s) => s.atS / 60);
    const slopes = {
      gateway: +slope(
        xs,
        warm.map((s) => s.gatewayMiB),
      ).toFixed(2),
      agent: +slope(
        xs,
        warm.map((s) => s.agentMiB),
      ).toFixed(2),
    };
    result = {
      at: new Date().toISOString(),
      burst: { streams: BURST, restSeconds: REST_S, before, after, afterRest, gatewayHeap: gatewayHeaps },
      soak: {
        minutes: MINUTES,
        streams: STREAMS,
        callers: CALLERS,
        sampleSeconds: SAMPLE_S,
        samples,
        ...steady,
        slopeMiBPerMinute: slopes,
        flat: Math.abs(slopes.gateway) <= FLAT_MIB_PER_MINUTE && Math.abs(slopes.agent) <= FLAT_MIB_PER_MINUTE,
      },
    };
  } finally {
    await stack.close();
    await gen.close();
  }
  await mkdir(join(import.meta.dirname, "results"), { recursive: true });
  await writeFile(join(import.meta.dirname, "results", "soak.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(JSON.stringify({ ...result, soak: { ...result.soak, samples: result.soak.samples.length } }, null, 2));
  process.exit(0);
}
