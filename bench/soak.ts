/**
 * `npm run bench:soak`: does memory come back, and does it stay flat under steady load?
 *
 * 1. A burst: `BENCH_SOAK_BURST` SSE streams at once (default 1,000, S3's top level, one round each), then a
 *    rest of `BENCH_SOAK_REST_S` seconds (default 30): RSS of the gateway and the agent before, right after and
 *    after the rest — what the burst left behind.
 * 2. A soak: `BENCH_SOAK_MINUTES` (default 10) of steady load — `BENCH_SOAK_STREAMS` SSE streams open at any time
 *    (default 100, run back to back) beside `BENCH_SOAK_CALLERS` clients of small calls (default 4, back to back);
 *    RSS of both processes and the gateway's V8 heap sampled every `BENCH_SOAK_SAMPLE_S` seconds (default 10).
 *    Two slopes (least squares, MiB per minute): over the first half (warm-up: pools, JIT code, V8's young
 *    generation growing to what the load needs) and over the second half (growth). RSS is flat when the
 *    second half's slope is within ±FLAT_MIB_PER_MINUTE for both processes.
 *
 * Every figure names its process: a process tree's total (the gateway's includes its `tsx` launcher and the
 * esbuild service tsx compiles with; the agent's its launcher) and each process of it, so a launcher is not
 * mistaken for the gateway. `BENCH_SOAK_GATEWAY_ENV` / `BENCH_SOAK_AGENT_ENV` (JSON objects) add environment
 * variables to the gateway / the agent launcher, to compare allocator settings (e.g. `{"MALLOC_ARENA_MAX":"2"}`).
 *
 * Writes bench/results/soak.json; `npm run bench` puts the last one in docs/performance.md (report.ts).
 */
import { mkdir, readFile, writeFile } from "node:fs/promises";
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
const GATEWAY_ENV = JSON.parse(process.env.BENCH_SOAK_GATEWAY_ENV ?? "{}") as Record<string, string>;
const AGENT_ENV = JSON.parse(process.env.BENCH_SOAK_AGENT_ENV ?? "{}") as Record<string, string>;
/** A slope within ± this, MiB per minute, is flat. */
export const FLAT_MIB_PER_MINUTE = 1;

/** RSS of the gateway's and the agent's process trees, MiB; `parts`: each process of them by its role. */
export interface ProcessMiB {
  gateway: number;
  agent: number;
  parts: Record<string, number>;
}

export interface GatewayHeap {
  heapUsed: number;
  heapTotal: number;
  /** V8's young generation as allocated (it grows under a burst of allocations and shrinks when idle). */
  newSpaceTotal: number;
  external: number;
}

/** The gateway's heap figures from its Prometheus metrics (prom-client's defaults), MiB. */
async function gatewayHeap(adminOrigin: string): Promise<GatewayHeap> {
  const text = await (await fetch(`${adminOrigin}/metrics`)).text();
  const v = (name: string) => mib(Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN));
  return {
    heapUsed: v("nodejs_heap_size_used_bytes"),
    heapTotal: v("nodejs_heap_size_total_bytes"),
    newSpaceTotal: v(`nodejs_heap_space_size_total_bytes\\{space="new"\\}`),
    external: v("nodejs_external_memory_bytes"),
  };
}

/** The agent's V8 heap from its status file (`Deno.memoryUsage()` when the agent last wrote it, ≤ 10 s old), MiB; null from an agent that does not report it. */
export interface AgentHeap {
  heapUsed: number;
  heapTotal: number;
  external: number;
}

async function agentHeap(dataDir: string): Promise<AgentHeap | null> {
  const status = JSON.parse(await readFile(join(dataDir, "state", "status.json"), "utf8").catch(() => "{}")) as {
    memory?: { heapUsedBytes: number; heapTotalBytes: number; externalBytes: number };
  };
  const m = status.memory;
  return m ? { heapUsed: mib(m.heapUsedBytes), heapTotal: mib(m.heapTotalBytes), external: mib(m.externalBytes) } : null;
}

export interface SoakSample {
  atS: number;
  gatewayMiB: number;
  agentMiB: number;
  /** The gateway process alone (without its launcher and esbuild), MiB. */
  gatewayProcessMiB: number;
  gatewayHeapTotalMiB: number;
  gatewayExternalMiB: number;
  /** The agent's V8 heap in use (its status file), MiB; null when it does not report it. */
  agentHeapUsedMiB: number | null;
}

/** Least-squares slopes of one soak half, MiB per minute. */
export interface SoakSlopes {
  gateway: number;
  agent: number;
  gatewayHeapTotal: number;
  gatewayExternal: number;
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
    /** The agent's, from its status file. */
    agentHeap: { before: AgentHeap | null; after: AgentHeap | null; afterRest: AgentHeap | null };
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
    /** Least-squares slopes over the first half (warm-up) and the second half (growth), MiB per minute. */
    slopeMiBPerMinute: { warmUp: SoakSlopes; growth: SoakSlopes };
    /** Both processes' RSS within ±FLAT_MIB_PER_MINUTE over the second half. */
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

/** What a process of the stack is, from its command line. */
export function roleOf(group: "gateway" | "agent", cmdline: string): string {
  if (/esbuild/.test(cmdline)) return "esbuild (tsx's compiler)";
  if (group === "gateway") return /\/tsx(\s|$)/.test(cmdline.split(" ").slice(0, 2).join(" ")) ? "tsx launcher" : "gateway";
  return /launch\.ts/.test(cmdline) ? "agent launcher" : /--allow-net/.test(cmdline) ? "agent" : "agent (other)";
}

interface Member {
  pid: number;
  role: string;
}

async function members(group: "gateway" | "agent", pids: number[]): Promise<Member[]> {
  const out: Member[] = [];
  for (const pid of pids) {
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")).split("\0").join(" ");
    out.push({ pid, role: `${group}: ${roleOf(group, cmdline)}` });
  }
  return out;
}

async function rssNow(groups: { gateway: Member[]; agent: Member[] }): Promise<ProcessMiB> {
  const parts: Record<string, number> = {};
  const sum = async (ms: Member[]) => {
    let total = 0;
    for (const m of ms) {
      const bytes = await rss(m.pid);
      parts[m.role] = +((parts[m.role] ?? 0) + mib(bytes)).toFixed(1);
      total += bytes;
    }
    return mib(total);
  };
  return { gateway: await sum(groups.gateway), agent: await sum(groups.agent), parts };
}

/** Slopes of the samples in [fromS, toS), MiB per minute. */
function slopes(samples: SoakSample[], fromS: number, toS: number): SoakSlopes {
  const part = samples.filter((s) => s.atS >= fromS && s.atS < toS);
  const xs = part.map((s) => s.atS / 60);
  const fit = (pick: (s: SoakSample) => number) => +slope(xs, part.map(pick)).toFixed(2);
  return {
    gateway: fit((s) => s.gatewayMiB),
    agent: fit((s) => s.agentMiB),
    gatewayHeapTotal: fit((s) => s.gatewayHeapTotalMiB),
    gatewayExternal: fit((s) => s.gatewayExternalMiB),
  };
}

if (import.meta.filename === process.argv[1]) {
  const gen = new Generator();
  const stack = await startStack({
    concurrentStreamsMax: 1024,
    gatewayEnv: { BILLING_LEASE_IDLE_RELEASE_MS: "2000", ...GATEWAY_ENV },
    agentEnv: Object.keys(AGENT_ENV).length > 0 ? AGENT_ENV : undefined,
  });
  let result: SoakResult;
  try {
    const processes = {
      gateway: await members("gateway", await processTree(stack.gateway.child.pid!)),
      agent: await members("agent", await processTree(stack.agent.child.pid!)),
    };
    const target: Target = { name: "wellspring", origin: stack.baseUrl };
    // Warm-up: the processes' code and pools as a steady load leaves them, before the first reading.
    await gen.call("load", stack.baseUrl, [stack.apiKey, stack.apiKey], 100);
    const before = await rssNow(processes);
    const heapBefore = await gatewayHeap(stack.gateway.adminOrigin);
    const agentBefore = await agentHeap(stack.agent.dataDir);
    const burst = BURST > 0 ? await gen.call("sseLoad", target, stack.apiKey, BURST, 1, "soak.burst") : [];
    const after = await rssNow(processes);
    const heapAfter = await gatewayHeap(stack.gateway.adminOrigin);
    const agentAfter = await agentHeap(stack.agent.dataDir);
    await sleep(REST_S * 1000);
    const afterRest = await rssNow(processes);
    const gatewayHeaps = { before: heapBefore, after: heapAfter, afterRest: await gatewayHeap(stack.gateway.adminOrigin) };
    const agentHeaps = { before: agentBefore, after: agentAfter, afterRest: await agentHeap(stack.agent.dataDir) };
    console.error(
      `burst of ${burst.length} streams: RSS MiB before ${JSON.stringify(before)}, after ${JSON.stringify(after)}, after ${REST_S} s ${JSON.stringify(afterRest)}; gateway heap ${JSON.stringify(gatewayHeaps)}; agent heap ${JSON.stringify(agentHeaps)}`,
    );

    const started = performance.now();
    const endAt = started + MINUTES * 60_000;
    const samples: SoakSample[] = [];
    const sampling = (async () => {
      while (performance.now() < endAt) {
        const r = await rssNow(processes);
        const heap = await gatewayHeap(stack.gateway.adminOrigin);
        const agent = await agentHeap(stack.agent.dataDir);
        samples.push({
          atS: +((performance.now() - started) / 1000).toFixed(1),
          gatewayMiB: r.gateway,
          agentMiB: r.agent,
          gatewayProcessMiB: r.parts["gateway: gateway"] ?? NaN,
          gatewayHeapTotalMiB: heap.heapTotal,
          gatewayExternalMiB: heap.external,
          agentHeapUsedMiB: agent?.heapUsed ?? null,
        });
        console.error(`soak ${samples.at(-1)!.atS} s: ${JSON.stringify(r.parts)}; gateway heap ${JSON.stringify(heap)}; agent heap ${JSON.stringify(agent)}`);
        await sleep(Math.min(SAMPLE_S * 1000, Math.max(0, endAt - performance.now())));
      }
    })();
    const steady = await gen.call("soakLoad", target, stack.apiKey, STREAMS, CALLERS, endAt - started);
    await sampling;
    const half = (MINUTES * 60) / 2;
    const warmUp = slopes(samples, 0, half);
    const growth = slopes(samples, half, Infinity);
    result = {
      at: new Date().toISOString(),
      burst: { streams: BURST, restSeconds: REST_S, before, after, afterRest, gatewayHeap: gatewayHeaps, agentHeap: agentHeaps },
      soak: {
        minutes: MINUTES,
        streams: STREAMS,
        callers: CALLERS,
        sampleSeconds: SAMPLE_S,
        samples,
        ...steady,
        slopeMiBPerMinute: { warmUp, growth },
        flat: Math.abs(growth.gateway) <= FLAT_MIB_PER_MINUTE && Math.abs(growth.agent) <= FLAT_MIB_PER_MINUTE,
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
