/**
 * S5 — cancellation: 10,000 streaming requests, each closed by its client at a random moment within its
 * first 100 ms (some before the response head, most mid-stream). Measured: the time from the client's
 * close to the provider seeing its connection closed (the mock records it), p50/p99; and leaks — a provider
 * call still open (or run to its end) after the client left, streams the gateway still counts as open,
 * money still held for a request that ended.
 */
import http from "node:http";
import type { MockProvider } from "@wellspring/mock-provider";
import type { Generator } from "./generator.ts";
import { pct, sleep, sseBody, type Pct, type Target } from "./lib.ts";

/**
 * Two loads: 10,000 aborts from 8 clients at once (cancellation itself, under the rate every path sustains),
 * then 2,000 from 32 clients (about 640 new streams a second, each streaming 100 events a second until it is
 * cancelled — past what the Wellspring path sustains on the benchmark machine, see docs/performance.md).
 */
export const S5_LEVELS = [
  { concurrency: 8, aborts: Number(process.env.BENCH_S5_ABORTS ?? 10_000) },
  { concurrency: 32, aborts: Math.round(Number(process.env.BENCH_S5_ABORTS ?? 10_000) / 5) },
];
/** Clients close within this long after sending, ms (uniformly at random). */
export const S5_ABORT_WITHIN_MS = 100;
/** How long the provider calls are left to close after the last abort before the rest count as leaked, ms. */
export const S5_GRACE_MS = 5_000;

export interface S5Figures {
  concurrency: number;
  aborts: number;
  /** Aborts whose request had reached the provider (the rest were stopped before it). */
  reachedProvider: number;
  /** Response statuses the clients had seen when they closed ("none": closed before the head). */
  statusesBeforeAbort: Record<string, number>;
  cancelMs: Pct;
  /** Provider calls still open after the grace period, or run to completion although the client left. */
  leaked: number;
}

/** One request, closed by the client after a random delay; when it closed (epoch ms) and the status seen by then ("none" before the head). */
function abortOne(origin: string, key: string, tag: string, agent: http.Agent): Promise<{ at: number; status: string }> {
  const body = sseBody(tag, 500, 10);
  return new Promise((resolve) => {
    let status = "none";
    const req = http.request(
      `${origin}/v1/chat/completions`,
      {
        method: "POST",
        agent,
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        status = String(res.statusCode);
        res.on("data", () => {}).on("error", () => {});
      },
    );
    req.on("error", () => {});
    req.end(body);
    setTimeout(() => {
      const at = performance.timeOrigin + performance.now();
      req.destroy();
      resolve({ at, status });
    }, Math.random() * S5_ABORT_WITHIN_MS);
  });
}

/** The client side of S5 (runs in the load generator): every abort's tag and when it happened, and the statuses seen. */
export async function abortMany(
  target: Target,
  key: string,
  total: number,
  concurrency: number,
): Promise<{ abortedAt: [string, number][]; statuses: Record<string, number> }> {
  const abortedAt: [string, number][] = [];
  const statuses: Record<string, number> = {};
  let next = 0;
  // A fresh connection per request: an aborted request's socket is gone anyway.
  const agent = new http.Agent({ keepAlive: false });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const tag = `s5.${target.name}.${concurrency}.${next++}`;
        const r = await abortOne(target.origin, key, tag, agent);
        abortedAt.push([tag, r.at]);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      }
    }),
  );
  agent.destroy();
  return { abortedAt, statuses };
}

/**
 * Runs the aborts against one path. `stillOpen` reports what the proxy itself still holds (open streams,
 * held reservations) once the grace period is over; it adds to the leak count.
 */
export async function runS5(
  gen: Generator,
  target: Target,
  key: string,
  mock: MockProvider,
  stillOpen: () => Promise<number>,
  level: (typeof S5_LEVELS)[number],
): Promise<S5Figures> {
  const c = await gen.call("abortMany", target, key, level.aborts, level.concurrency);
  const abortedAt = new Map(c.abortedAt);
  const deadline = Date.now() + S5_GRACE_MS;
  const ours = () => mock.requests.filter((r) => r.tag !== null && abortedAt.has(r.tag));
  while (Date.now() < deadline && ours().some((r) => r.cancelledAt === null && r.finishedAt === null)) await sleep(50);
  const seen = ours();
  const latencies = seen.filter((r) => r.cancelledAt !== null).map((r) => Math.max(0, r.cancelledAt! - abortedAt.get(r.tag!)!));
  const providerLeaks = seen.filter((r) => r.cancelledAt === null).length;
  return {
    concurrency: level.concurrency,
    aborts: abortedAt.size,
    reachedProvider: seen.length,
    statusesBeforeAbort: c.statuses,
    cancelMs: pct(latencies),
    leaked: providerLeaks + (await stillOpen()),
  };
}
