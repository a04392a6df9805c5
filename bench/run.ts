/**
 * `npm run bench`: the quick latency figure for the tunnel (S1 of the benchmark issue): a small
 * non-streaming chat call at concurrency 1, direct to the mock provider vs through gateway → tunnel → agent,
 * measured in the same run on this machine. Results go to bench/results/latest.json.
 * The full suite (throughput, SSE at 1,000 streams, bulk, cancellation, nginx comparison) is its own issue.
 */
import http from "node:http";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { startStack } from "../e2e/stack/harness.ts";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000);
const WARMUP = 200;

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

const stack = await startStack();
try {
  await measure(stack.mock.origin, stack.apiKey, WARMUP);
  await measure(stack.baseUrl, stack.apiKey, WARMUP);
  const direct = await measure(stack.mock.origin, stack.apiKey, REQUESTS);
  const tunnel = await measure(stack.baseUrl, stack.apiKey, REQUESTS);
  const row = (xs: number[]) => ({ p50: +percentile(xs, 50).toFixed(3), p90: +percentile(xs, 90).toFixed(3), p95: +percentile(xs, 95).toFixed(3), p99: +percentile(xs, 99).toFixed(3), max: +xs[xs.length - 1]!.toFixed(3) });
  const result = {
    scenario: "S1: small non-streaming chat call (≈1 KB in, ≈0.5 KB out), concurrency 1",
    requests: REQUESTS,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    directMs: row(direct),
    tunnelMs: row(tunnel),
    addedMs: { p50: +(percentile(tunnel, 50) - percentile(direct, 50)).toFixed(3), p99: +(percentile(tunnel, 99) - percentile(direct, 99)).toFixed(3) },
    ratio: { p50: +(percentile(tunnel, 50) / percentile(direct, 50)).toFixed(2), p99: +(percentile(tunnel, 99) / percentile(direct, 99)).toFixed(2) },
    at: new Date().toISOString(),
  };
  console.log(JSON.stringify(result, null, 2));
  await mkdir(join(import.meta.dirname, "results"), { recursive: true });
  await writeFile(join(import.meta.dirname, "results", "latest.json"), JSON.stringify(result, null, 2) + "\n");
} finally {
  await stack.close();
}
process.exit(0);
