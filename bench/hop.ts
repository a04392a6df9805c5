/**
 * `npm run bench:hop`: the two figures the request path is tuned against, in a minute instead of the full
 * benchmark's six — S1's added median at concurrency 1 (Wellspring against direct, same run) and the CPU-seconds
 * per 1,000 small requests at concurrency 32 of the gateway and the agent (PostgreSQL is every `postgres`
 * process on the machine, so it includes other work on a shared box; `postgresThisDatabase` is only the backends
 * connected to this run's database; `agentMainThread` is the agent's main threads alone, its event loop without its
 * Workers and helper threads). BENCH_REQUESTS (S1, default 2000) and
 * BENCH_S2_REQUESTS (default 4000) set the counts; BENCH_GATEWAY_CPU_PROF=<dir> writes the gateway's V8 CPU
 * profile there, through a preload (bench/cpu_profile_preload.mjs) that starts the inspector's profiler and
 * writes `<dir>/<pid>.cpuprofile` at exit. BENCH_SSE_STREAMS=<n> then runs S3's SSE load at n streams
 * (two rounds each) and reports TTFB, errors, and the RSS of gateway and agent before, right after and 10 s after.
 * BENCH_PERF=<dir> records `perf` samples (on-CPU only, with call chains; JavaScript frames named through V8's
 * --perf-basic-prof maps) of the gateway and the agent during the concurrency-32 phase into `<dir>/perf.data`, and
 * their pids into `<dir>/pids.json`; `npm run bench:profile` runs this and summarises it.
 * `--gateway-processes N` (or BENCH_GATEWAY_PROCESSES) starts the gateway with GATEWAY_PROCESSES=N (gateway/src/cluster.ts;
 * its CPU is then the primary's and every worker's), and `--s2` adds an S2 sweep: BENCH_S2_REQUESTS small calls at
 * each of S2_LEVELS clients (one keep-alive connection each), reporting each level and the best requests/s whose
 * p99 stayed ≤ 100 ms, as `npm run bench` does. On this 2-core machine the load generator, the mock provider, the
 * agent and PostgreSQL share the cores with the gateway: 1 vs 2 processes compares what the gateway gets from them.
 * `-- --ledger on|off|both` (default on): off runs the agent without its edge ledger (`--dev-no-ledger`, a
 * development agent only; the hub then sends it no statements), both alternates on and off; `-- --rounds N`
 * repeats that N times (default 1), so the ledger's share of S1 and of concurrency 32 is read from runs made back
 * to back. Prints one JSON line per run (and, with both, one more with each mode's medians); writes no file otherwise.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cpuSeconds, mainThreadCpuSeconds, pidsNamed, processTree, rssBytes } from "../e2e/stack/procfs.ts";
import { startStack, type Stack } from "../e2e/stack/harness.ts";
import { Generator } from "./generator.ts";
import { percentile, sleep } from "./lib.ts";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const S2_REQUESTS = Number(process.env.BENCH_S2_REQUESTS ?? 4000);
const CONCURRENCY = 32;
const WARMUP = 300;
const profileDir = process.env.BENCH_GATEWAY_CPU_PROF;
const SSE_STREAMS = Number(process.env.BENCH_SSE_STREAMS ?? 0);
const perfDir = process.env.BENCH_PERF;
/** perf's sampling rate while it records, Hz (per process; low enough that the recording costs little). */
const PERF_FREQUENCY_HZ = 499;
/** How long after the SSE load RSS is read again, ms. */
const SETTLE_MS = 10_000;

const gen = new Generator();
const args = process.argv.slice(2);
const argValue = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const ledgerArg = argValue("ledger") ?? "on";
if (!["on", "off", "both"].includes(ledgerArg)) throw new Error("--ledger must be on, off or both");
const ROUNDS = Number(argValue("rounds") ?? 1);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error("--rounds must be a positive integer");
const modes: ("on" | "off")[] = ledgerArg === "both" ? ["on", "off"] : [ledgerArg as "on" | "off"];
const GATEWAY_PROCESSES = argValue("gateway-processes") ?? process.env.BENCH_GATEWAY_PROCESSES ?? "1";
if (!/^([1-9][0-9]*|auto)$/.test(GATEWAY_PROCESSES)) throw new Error(`--gateway-processes must be a whole number from 1 or auto, not ${GATEWAY_PROCESSES}`);
const S2_SWEEP = args.includes("--s2");
/** The S2 sweep's client counts, and the p99 a level must stay under to count (as in bench/run.ts). */
const S2_LEVELS = [8, 32, 64, 128];
const S2_P99_BOUND_MS = 100;

interface HopRun {
  ledger: "on" | "off";
  round: number;
  s1: { addedP50Ms: number; addedP99Ms: number };
  c32: { requestsPerSecond: number; cpuPer1000: Record<string, number> };
}
const runs: HopRun[] = [];
try {
  for (let round = 1; round <= ROUNDS; round++) {
    for (const ledger of modes) runs.push(await runOnce(ledger, round));
  }
} finally {
  await gen.close();
}
if (modes.length > 1) {
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return +(s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2).toFixed(3);
  };
  const summary = Object.fromEntries(
    modes.map((mode) => {
      const of = runs.filter((r) => r.ledger === mode);
      return [
        mode,
        {
          runs: of.length,
          s1AddedP50Ms: median(of.map((r) => r.s1.addedP50Ms)),
          s1AddedP99Ms: median(of.map((r) => r.s1.addedP99Ms)),
          c32RequestsPerSecond: median(of.map((r) => r.c32.requestsPerSecond)),
          cpuPer1000: Object.fromEntries(Object.keys(of[0]!.c32.cpuPer1000).map((k) => [k, median(of.map((r) => r.c32.cpuPer1000[k]!))])),
        },
      ];
    }),
  );
  console.log(JSON.stringify({ at: new Date().toISOString(), ledgerMedians: summary }));
}

/** One stack, one measurement: S1 at concurrency 1 against direct, then concurrency 32 with each process's CPU. */
async function runOnce(ledger: "on" | "off", round: number): Promise<HopRun> {
  const stack = await startStack({
    concurrentStreamsMax: 1024,
    // Node 20 refuses --cpu-prof in NODE_OPTIONS: a preload starts the profiler instead.
    gatewayEnv: {
      GATEWAY_PROCESSES,
      ...(profileDir
        ? { NODE_OPTIONS: `--import ${join(import.meta.dirname, "cpu_profile_preload.mjs")}`, CPUPROF_DIR: profileDir }
        : perfDir
          ? { NODE_OPTIONS: "--perf-basic-prof" }
          : {}),
    },
    // Several processes start side by side on the shared cores.
    gatewayReadyTimeoutMs: GATEWAY_PROCESSES === "1" ? undefined : 120_000,
    agentEnv: perfDir ? { DENO_V8_FLAGS: "--perf-basic-prof" } : {},
    agentLedger: ledger === "on",
  });
  try {
    await gen.call("measure", stack.mock.origin, stack.apiKey, WARMUP);
    await gen.call("measure", stack.baseUrl, stack.apiKey, WARMUP);
    await gen.call(
      "load",
      stack.baseUrl,
      Array.from({ length: CONCURRENCY }, () => stack.apiKey),
      20,
    );
    const direct = await gen.call("measure", stack.mock.origin, stack.apiKey, REQUESTS);
    const hop = await gen.call("measure", stack.baseUrl, stack.apiKey, REQUESTS);
    const groups = {
      gateway: await processTree(stack.gateway.child.pid!),
      agent: await processTree(stack.agent.child.pid!),
      postgres: await pidsNamed("postgres"),
    };
    const before = Object.fromEntries(await Promise.all(Object.entries(groups).map(async ([k, p]) => [k, await cpuSeconds(p)] as const)));
    const agentMainBefore = await mainThreadCpuSeconds(groups.agent);
    const backendsBefore = await backendCpu(stack.db);
    const perClient = Math.floor(S2_REQUESTS / CONCURRENCY);
    const perf = perfDir ? await startPerf(perfDir, { gateway: groups.gateway, agent: groups.agent }) : null;
    const r = await gen.call(
      "load",
      stack.baseUrl,
      Array.from({ length: CONCURRENCY }, () => stack.apiKey),
      perClient,
    );
    await perf?.stop();
    const n = perClient * CONCURRENCY;
    const cpuPer1000: Record<string, number> = {};
    for (const [k, p] of Object.entries(groups)) cpuPer1000[k] = +((((await cpuSeconds(p)) - before[k]!) / n) * 1000).toFixed(3);
    // The agent's main threads alone (its event loop: the tunnel; not its Workers, I/O or V8 helper threads).
    cpuPer1000.agentMainThread = +((((await mainThreadCpuSeconds(groups.agent)) - agentMainBefore) / n) * 1000).toFixed(3);
    let backendSeconds = 0;
    for (const [pid, cpu] of await backendCpu(stack.db)) backendSeconds += cpu - (backendsBefore.get(pid) ?? 0);
    cpuPer1000.postgresThisDatabase = +((backendSeconds / n) * 1000).toFixed(3);
    const rssMiB = async () => {
      const out: Record<string, number> = {};
      for (const k of ["gateway", "agent"] as const) {
        let sum = 0;
        for (const pid of groups[k]) sum += await rssBytes(pid).catch(() => 0);
        out[k] = +(sum / 2 ** 20).toFixed(1);
      }
      return out;
    };
    const p = (xs: number[], q: number) => +percentile(xs, q).toFixed(3);
    const rssAfterC32 = await rssMiB();
    let s2: Record<string, unknown> | null = null;
    if (S2_SWEEP) {
      const levels: { clients: number; requestsPerSecond: number; p50Ms: number; p99Ms: number; cpuPer1000: Record<string, number> }[] = [];
      for (const clients of S2_LEVELS) {
        const each = Math.max(1, Math.floor(S2_REQUESTS / clients));
        const cpuBefore = Object.fromEntries(await Promise.all(Object.entries(groups).map(async ([k, ps]) => [k, await cpuSeconds(ps)] as const)));
        const l = await gen.call(
          "load",
          stack.baseUrl,
          Array.from({ length: clients }, () => stack.apiKey),
          each,
        );
        const cpu: Record<string, number> = {};
        for (const [k, ps] of Object.entries(groups)) cpu[k] = +((((await cpuSeconds(ps)) - cpuBefore[k]!) / l.latencies.length) * 1000).toFixed(3);
        levels.push({
          clients,
          requestsPerSecond: Math.round(l.latencies.length / l.seconds),
          p50Ms: p(l.latencies, 50),
          p99Ms: p(l.latencies, 99),
          cpuPer1000: cpu,
        });
      }
      const under = levels.filter((l) => l.p99Ms <= S2_P99_BOUND_MS);
      s2 = { levels, bestRequestsPerSecondP99Under100Ms: under.length ? Math.max(...under.map((l) => l.requestsPerSecond)) : 0 };
    }
    let sse: Record<string, unknown> | null = null;
    if (SSE_STREAMS > 0) {
      const results = await gen.call("sseLoad", { name: "wellspring", origin: stack.baseUrl }, stack.apiKey, SSE_STREAMS, 2, "hop");
      const rightAfter = await rssMiB();
      await sleep(SETTLE_MS);
      const ttfb = results.map((r) => r.ttfbMs).sort((a, b) => a - b);
      sse = {
        streams: SSE_STREAMS,
        calls: results.length,
        errors: results.filter((r) => r.error !== null || r.status !== 200).length,
        ttfbP50Ms: p(ttfb, 50),
        ttfbP99Ms: p(ttfb, 99),
        rssRightAfterMiB: rightAfter,
        rssSettledMiB: await rssMiB(),
      };
    }
    const run = {
      at: new Date().toISOString(),
      ledger,
      round,
      gatewayProcesses: GATEWAY_PROCESSES,
      s1: {
        requests: REQUESTS,
        directP50Ms: p(direct, 50),
        wellspringP50Ms: p(hop, 50),
        addedP50Ms: +(percentile(hop, 50) - percentile(direct, 50)).toFixed(3),
        addedP99Ms: +(percentile(hop, 99) - percentile(direct, 99)).toFixed(3),
      },
      c32: { requests: n, requestsPerSecond: Math.round(r.latencies.length / r.seconds), p99Ms: p(r.latencies, 99), cpuPer1000 },
      rssAfterC32MiB: rssAfterC32,
      s2,
      sse,
    };
    console.log(JSON.stringify(run));
    return run;
  } finally {
    await stack.close();
  }
}

/**
 * CPU-seconds so far of each PostgreSQL backend connected to this run's database (by pid): what the stack's own
 * queries cost, without the other work on a shared server (its WAL writer and checkpointer are not counted).
 */
async function backendCpu(db: Stack["db"]): Promise<Map<number, number>> {
  const rows = await db.$queryRaw<{ pid: number }[]>`SELECT pid FROM pg_stat_activity WHERE datname = current_database()`;
  const out = new Map<number, number>();
  for (const { pid } of rows) out.set(pid, await cpuSeconds([pid]));
  return out;
}

/** `perf record` on the given processes until `stop()`; their pids by role go beside the data for the report. */
async function startPerf(dir: string, pids: Record<string, number[]>): Promise<{ stop(): Promise<void> }> {
  await writeFile(join(dir, "pids.json"), JSON.stringify(pids));
  const all = Object.values(pids).flat();
  const child = spawn("perf", ["record", "-F", String(PERF_FREQUENCY_HZ), "-g", "-o", join(dir, "perf.data"), "-p", all.join(",")], { stdio: "ignore" });
  await sleep(500); // perf attaches before the load starts
  return {
    async stop() {
      const exited = once(child, "exit");
      child.kill("SIGINT");
      await exited;
    },
  };
}
