/**
 * What every benchmark scenario shares: percentiles, a timed HTTP call, and an SSE client that records when
 * each event arrived and hashes what it received (to compare with what the mock provider sent).
 */
import http from "node:http";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface Pct {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** p50 / p90 / p99 / max of `xs` (sorted here), rounded to µs. */
export function pct(xs: number[]): Pct {
  const s = [...xs].sort((a, b) => a - b);
  const r = (v: number) => +v.toFixed(3);
  return { p50: r(percentile(s, 50)), p90: r(percentile(s, 90)), p99: r(percentile(s, 99)), max: r(s[s.length - 1] ?? NaN) };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The three ways every scenario runs, in the same session. */
export type PathName = "direct" | "nginx" | "wellspring";
export interface Target {
  name: PathName;
  origin: string;
}

/** A keep-alive HTTP agent for one load generator (sockets are reused across its requests). */
export const keepAlive = (maxSockets = Infinity) => new http.Agent({ keepAlive: true, maxSockets });

/** Sends one POST and reads the whole response; resolves with the status and the bytes received. */
export function post(
  origin: string,
  path: string,
  key: string,
  body: string | Buffer,
  agent: http.Agent,
  contentType = "application/json",
): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${origin}${path}`,
      {
        method: "POST",
        agent,
        headers: { authorization: `Bearer ${key}`, "content-type": contentType, "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        let bytes = 0;
        res.on("data", (c: Buffer) => (bytes += c.length));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** A streaming chat request the mock answers with `chunks` content events `delayMs` apart, labelled `tag`. */
export function sseBody(tag: string, chunks: number, delayMs: number): string {
  return JSON.stringify({
    model: "gpt-4o-mini",
    stream: true,
    stream_options: { include_usage: true },
    messages: [{ role: "user", content: `[mock chunks=${chunks} delay_ms=${delayMs} tag=${tag}] Write a short poem.` }],
  });
}

export interface SseResult {
  tag: string;
  status: number;
  /** `performance.now()` at the send (this thread's clock). */
  startedAt: number;
  /** The send as epoch milliseconds (comparable with the mock provider's record times). */
  sentAtEpochMs: number;
  /** Send → first complete SSE event, ms. */
  ttfbMs: number;
  /** Arrival time of each complete event, ms after the send. */
  eventAtMs: number[];
  sha256: string;
  bytes: number;
  /** The connection failed or ended before the stream's end. */
  error: string | null;
}

/** Runs one SSE request and records when each event (`\n\n`-terminated) arrived. */
export function sseCall(origin: string, key: string, tag: string, chunks: number, delayMs: number, agent: http.Agent): Promise<SseResult> {
  const body = sseBody(tag, chunks, delayMs);
  return new Promise((resolve) => {
    const t0 = performance.now();
    const hash = createHash("sha256");
    const eventAtMs: number[] = [];
    let bytes = 0;
    let tail = "";
    let status = 0;
    let done = false;
    const finish = (error: string | null) => {
      if (done) return;
      done = true;
      resolve({
        tag,
        status,
        startedAt: t0,
        sentAtEpochMs: performance.timeOrigin + t0,
        ttfbMs: eventAtMs[0] ?? NaN,
        eventAtMs,
        sha256: hash.digest("hex"),
        bytes,
        error,
      });
    };
    const req = http.request(
      `${origin}/v1/chat/completions`,
      {
        method: "POST",
        agent,
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        status = res.statusCode ?? 0;
        res.on("data", (c: Buffer) => {
          const at = performance.now() - t0;
          hash.update(c);
          bytes += c.length;
          const text = tail + c.toString("latin1");
          let from = 0;
          for (let i = text.indexOf("\n\n"); i >= 0; i = text.indexOf("\n\n", from)) {
            eventAtMs.push(at);
            from = i + 2;
          }
          tail = text.slice(from);
        });
        res.on("end", () => finish(null));
        res.on("error", (e) => finish(e.message));
        res.on("aborted", () => finish("aborted"));
      },
    );
    req.on("error", (e) => finish(e.message));
    req.end(body);
  });
}

/**
 * Gaps between the paced content events of an SSE result: events 1…chunks (event 0 is the role chunk,
 * sent with the first content chunk; the finish, usage and [DONE] events follow without a pause).
 */
export function contentGaps(r: SseResult, chunks: number): number[] {
  const gaps: number[] = [];
  for (let i = 2; i <= chunks && i < r.eventAtMs.length; i++) gaps.push(r.eventAtMs[i]! - r.eventAtMs[i - 1]!);
  return gaps;
}

/** Resident set size of a process, bytes (0 once it is gone). */
export async function rss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Samples the summed RSS of each group of pids every `everyMs` until stopped; returns the peaks. */
export function rssSampler(groups: Record<string, number[]>, everyMs = 20): { stop(): Promise<Record<string, number>> } {
  const peak: Record<string, number> = Object.fromEntries(Object.keys(groups).map((k) => [k, 0]));
  let running = true;
  const loop = (async () => {
    while (running) {
      for (const [k, pids] of Object.entries(groups)) {
        let sum = 0;
        for (const pid of pids) sum += await rss(pid);
        peak[k] = Math.max(peak[k]!, sum);
      }
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** S1 / S2 / S6 request: a small non-streaming chat call (≈1 KB in, ≈0.5 KB out). */
export const SMALL_CALL = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(900) + " [mock chunks=5]" }] });

/** `n` small calls back to back on one keep-alive connection; latencies in ms, sorted. */
export async function measure(origin: string, key: string, n: number): Promise<number[]> {
  const agent = keepAlive(1);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const r = await post(origin, "/v1/chat/completions", key, SMALL_CALL, agent);
      if (r.status !== 200) throw new Error(`${origin}: status ${r.status}`);
      out.push(performance.now() - t0);
    }
  } finally {
    agent.destroy();
  }
  return out.sort((a, b) => a - b);
}

/** One client per key, all at once, each sending `perClient` small calls back to back. */
export async function load(origin: string, keys: string[], perClient: number): Promise<{ latencies: number[]; seconds: number }> {
  const started = performance.now();
  const all = await Promise.all(keys.map((key) => measure(origin, key, perClient)));
  return { latencies: all.flat().sort((a, b) => a - b), seconds: (performance.now() - started) / 1000 };
}

export const mib = (bytes: number) => +(bytes / 2 ** 20).toFixed(1);
