/**
 * `npm run bench`: the quick latency figures for the tunnel (S1 of the benchmark issue): a small
 * non-streaming chat call at concurrency 1, direct to the mock provider vs through gateway → tunnel → agent
 * with billing on, and with billing off, measured in the same run on this machine; and the billing path
 * under load: 100 concurrent clients on one wallet vs on 100 wallets. Results go to bench/results/latest.json.
 * The full suite (throughput, SSE at 1,000 streams, bulk, cancellation, nginx comparison) is its own issue.
 */
import http from "node:http";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { newId } from "@wellspring/db";
import { issueKey } from "../gateway/src/api/keys.ts";
import { fund, startStack } from "../e2e/stack/harness.ts";
import { startNginx } from "./nginx.ts";
import { cpuSeconds, pidsNamed, processTree } from "../e2e/stack/procfs.ts";
import { writePerformanceDoc } from "./report.ts";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = 200;
/** S2: concurrency levels, and requests sent at each. */
const S2_LEVELS = [1, 8, 32, 128, 256];
const S2_REQUESTS = Number(process.env.BENCH_S2_REQUESTS ?? 3000);
/** Concurrent clients in the billing-under-load scenario, and requests each sends. */
const LOAD_CLIENTS = 100;
const LOAD_REQUESTS_PER_CLIENT = Number(process.env.BENCH_LOAD_REQUESTS ?? 20);

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function measure(origin: string, key: string, n: number): Promise<number[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(900) + " [mock chunks=5]" }] });
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const req = http.request(`${origin}/v1/chat/completions`, { method: "POST", agent, headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) } }, (res) => {
        res.on("data", () => {});
        res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`status ${res.statusCode}`))));
      });
      req.on("error", reject);
      req.end(body);
    });
    out.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  agent.destroy();
  return out.sort((a, b) => a - b);
}

interface Throughput {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** S2: `total` requests spread over `concurrency` clients; requests per second and latency. */
async function throughput(origin: string, key: string, concurrency: number, total: number): Promise<Throughput> {
  const perClient = Math.max(1, Math.floor(total / concurrency));
  const r = await load(origin, Array.from({ length: concurrency }, () => key), perClient);
  return { requestsPerSecond: Math.round(r.latencies.length / r.seconds), p50Ms: +percentile(r.latencies, 50).toFixed(2), p99Ms: +percentile(r.latencies, 99).toFixed(2) };
}

/** `clients` concurrent clients, each with its key, each sending `perClient` requests back to back. */
async function load(origin: string, keys: string[], perClient: number): Promise<{ latencies: number[]; seconds: number }> {
  const started = process.hrtime.bigint();
  const all = await Promise.all(keys.map((key) => measure(origin, key, perClient)));
  return { latencies: all.flat().sort((a, b) => a - b), seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

const row = (xs: number[]) => ({ p50: +percentile(xs, 50).toFixed(3), p90: +percentile(xs, 90).toFixed(3), p95: +percentile(xs, 95).toFixed(3), p99: +percentile(xs, 99).toFixed(3), max: +xs[xs.length - 1]!.toFixed(3) });
const added = (xs: number[], base: number[]) => ({ p50: +(percentile(xs, 50) - percentile(base, 50)).toFixed(3), p99: +(percentile(xs, 99) - percentile(base, 99)).toFixed(3) });
const ratio = (xs: number[], base: number[]) => ({ p50: +(percentile(xs, 50) / percentile(base, 50)).toFixed(2), p99: +(percentile(xs, 99) / percentile(base, 99)).toFixed(2) });

let direct: number[];
let tunnel: number[];
let viaNginx: number[] | null = null;
const s2: { concurrency: number; direct: Throughput; nginx: Throughput | null; wellspring: Throughput }[] = [];
/** CPU-seconds per 1,000 requests of each process, measured over the S2 run at CPU_CONCURRENCY. */
const CPU_CONCURRENCY = 32;
let cpuPer1000: Record<string, number> | null = null;
let oneWallet: Awaited<ReturnType<typeof load>>;
let manyWallets: Awaited<ReturnType<typeof load>>;
const stack = await startStack();
try {
  await measure(stack.mock.origin, stack.apiKey, WARMUP);
  await measure(stack.baseUrl, stack.apiKey, WARMUP);
  const nginx = await startNginx(stack.mock.origin);
  try {
    direct = await measure(stack.mock.origin, stack.apiKey, REQUESTS);
    if (nginx) {
      await measure(nginx.origin, stack.apiKey, WARMUP);
      viaNginx = await measure(nginx.origin, stack.apiKey, REQUESTS);
    }
    tunnel = await measure(stack.baseUrl, stack.apiKey, REQUESTS);
    for (const c of S2_LEVELS) {
      const directTp = await throughput(stack.mock.origin, stack.apiKey, c, S2_REQUESTS);
      const nginxTp = nginx ? await throughput(nginx.origin, stack.apiKey, c, S2_REQUESTS) : null;
      const groups = {
        gateway: await processTree(stack.gateway.child.pid!),
        agent: await processTree(stack.agent.child.pid!),
        postgres: await pidsNamed("postgres"),
      };
      const before = Object.fromEntries(await Promise.all(Object.entries(groups).map(async ([k, p]) => [k, await cpuSeconds(p)] as const)));
      const selfBefore = process.cpuUsage();
      const wellspringTp = await throughput(stack.baseUrl, stack.apiKey, c, S2_REQUESTS);
      if (c === CPU_CONCURRENCY) {
        const n = Math.max(1, Math.floor(S2_REQUESTS / c)) * c;
        const self = process.cpuUsage(selfBefore);
        cpuPer1000 = { "client + mock provider (bench process)": ((self.user + self.system) / 1e6 / n) * 1000 };
        for (const [k, p] of Object.entries(groups)) cpuPer1000[k] = (((await cpuSeconds(p)) - before[k]!) / n) * 1000;
        for (const k of Object.keys(cpuPer1000)) cpuPer1000[k] = +cpuPer1000[k]!.toFixed(3);
      }
      s2.push({ concurrency: c, direct: directTp, nginx: nginxTp, wellspring: wellspringTp });
    }
  } finally {
    await nginx?.stop();
  }
  // Billing under load: 100 concurrent clients sharing one wallet (one key), then 100 wallets.
  oneWallet = await load(stack.baseUrl, Array.from({ length: LOAD_CLIENTS }, () => stack.apiKey), LOAD_REQUESTS_PER_CLIENT);
  const keys: string[] = [];
  for (let i = 0; i < LOAD_CLIENTS; i++) {
    const userId = newId("usr");
    await stack.db.user.create({ data: { id: userId, email: `${userId}@bench.test` } });
    await fund(stack.database.url, userId, 100_000_000n);
    keys.push((await issueKey(stack.db, userId, "bench")).secret);
  }
  manyWallets = await load(stack.baseUrl, keys, LOAD_REQUESTS_PER_CLIENT);
} finally {
  await stack.close();
}
// The same call with billing off, to isolate what reserve + settle add.
const plain = await startStack({ gatewayEnv: { BILLING_ENABLED: "0" } });
let unbilled: number[];
try {
  await measure(plain.baseUrl, plain.apiKey, WARMUP);
  unbilled = await measure(plain.baseUrl, plain.apiKey, REQUESTS);
} finally {
  await plain.close();
}
const result = {
  scenario: "S1: small non-streaming chat call (≈1 KB in, ≈0.5 KB out), concurrency 1",
  requests: REQUESTS,
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
  directMs: row(direct),
  nginxMs: viaNginx ? row(viaNginx) : null,
  tunnelMs: row(tunnel),
  addedMs: added(tunnel, direct),
  ratio: ratio(tunnel, direct),
  nginxAddedMs: viaNginx ? added(viaNginx, direct) : null,
  ratioToNginx: viaNginx ? ratio(tunnel, viaNginx) : null,
  tunnelBillingOffMs: row(unbilled),
  billingAddsMs: added(tunnel, unbilled),
  billingUnderLoad: {
    scenario: `${LOAD_CLIENTS} concurrent clients × ${LOAD_REQUESTS_PER_CLIENT} requests through the gateway with billing on`,
    oneWallet: { ...row(oneWallet.latencies), requestsPerSecond: Math.round(oneWallet.latencies.length / oneWallet.seconds) },
    hundredWallets: { ...row(manyWallets.latencies), requestsPerSecond: Math.round(manyWallets.latencies.length / manyWallets.seconds) },
  },
  s2: {
    scenario: `S2: ${S2_REQUESTS} small non-streaming calls per concurrency level, billing on`,
    levels: s2,
    cpuSecondsPer1000Requests: { concurrency: CPU_CONCURRENCY, byProcess: cpuPer1000 },
    bestRequestsPerSecond: {
      direct: Math.max(...s2.map((l) => l.direct.requestsPerSecond)),
      nginx: s2.every((l) => l.nginx) ? Math.max(...s2.map((l) => l.nginx!.requestsPerSecond)) : null,
      wellspring: Math.max(...s2.map((l) => l.wellspring.requestsPerSecond)),
    },
  },
  at: new Date().toISOString(),
};
console.log(JSON.stringify(result, null, 2));
await mkdir(join(import.meta.dirname, "results"), { recursive: true });
await writeFile(join(import.meta.dirname, "results", "latest.json"), JSON.stringify(result, null, 2) + "\n");
await writePerformanceDoc(result);
process.exit(0);
