/**
 * S3 — SSE: streams of 64 content events 20 ms apart, 1 → 1,000 of them open at once through one agent.
 * Each level runs `level` clients; each starts at a random moment within one stream's length (so the level
 * is reached as a steady state, not as one connection storm) and runs a few streams back to back.
 * Measured at the client: time to the first event, the gaps between paced events, stalls, and whether the
 * bytes received are exactly the bytes the mock provider sent (SHA-256 of each stream, matched by tag).
 */
import type { MockProvider } from "@wellspring/mock-provider";
import type { Generator } from "./generator.ts";
import { contentGaps, keepAlive, pct, post, sleep, SMALL_CALL, sseCall, type Pct, type SseResult, type Target } from "./lib.ts";

export const S3_CHUNKS = 64;
export const S3_DELAY_MS = 20;
export const S3_LEVELS = (process.env.BENCH_S3_LEVELS ?? "1,10,100,1000").split(",").map(Number);
/** Streams each client runs back to back: more at the low levels, so every level has a fair sample. */
export const s3Rounds = (level: number) => (level === 1 ? 8 : level <= 10 ? 3 : 2);
/** A gap between two paced events longer than this is a stall, ms. */
export const STALL_GAP_MS = 250;

export interface SseFigures {
  streams: number;
  ttfbMs: Pct;
  gapMs: Pct;
  stalls: number;
  errors: number;
  /** Streams whose bytes matched the provider's exactly, percent. */
  byteExactPct: number;
}

/** The figures for a set of finished streams, checked against what the mock sent. */
export function sseFigures(results: SseResult[], mock: MockProvider): SseFigures {
  const sent = new Map<string, string>();
  const tags = new Set(results.map((r) => r.tag));
  for (const rec of mock.requests) if (rec.tag && tags.has(rec.tag)) sent.set(rec.tag, rec.responseSha256);
  const gaps = results.flatMap((r) => contentGaps(r, S3_CHUNKS));
  const exact = results.filter((r) => r.error === null && r.status === 200 && sent.get(r.tag) === r.sha256).length;
  return {
    streams: results.length,
    ttfbMs: pct(results.map((r) => r.ttfbMs).filter((v) => !Number.isNaN(v))),
    gapMs: pct(gaps),
    stalls: gaps.filter((g) => g > STALL_GAP_MS).length,
    errors: results.filter((r) => r.error !== null || r.status !== 200 || r.eventAtMs.length < S3_CHUNKS + 1).length,
    byteExactPct: +((exact / Math.max(1, results.length)) * 100).toFixed(2),
  };
}

/** `clients` SSE clients, each running `rounds` streams back to back after a random start offset. */
export async function sseLoad(target: Target, key: string, clients: number, rounds: number, label: string, until?: () => boolean): Promise<SseResult[]> {
  const agent = keepAlive();
  const streamMs = S3_CHUNKS * S3_DELAY_MS;
  try {
    const perClient = await Promise.all(
      Array.from({ length: clients }, async (_, i) => {
        await sleep(Math.random() * streamMs);
        const out: SseResult[] = [];
        for (let r = 0; until ? !until() : r < rounds; r++) {
          out.push(await sseCall(target.origin, key, `${label}.${target.name}.${i}.${r}`, S3_CHUNKS, S3_DELAY_MS, agent));
        }
        return out;
      }),
    );
    return perClient.flat();
  } finally {
    agent.destroy();
  }
}

export interface S3Level {
  streams: number;
  byPath: Partial<Record<Target["name"], SseFigures>>;
}

export async function runS3(gen: Generator, targets: Target[], key: string, mock: MockProvider): Promise<S3Level[]> {
  const levels: S3Level[] = [];
  for (const level of S3_LEVELS) {
    const byPath: S3Level["byPath"] = {};
    for (const t of targets) {
      const results = await gen.call("sseLoad", t, key, level, s3Rounds(level), `s3.${level}`);
      byPath[t.name] = sseFigures(results, mock);
      console.error(`S3 ${level} streams ${t.name}: ${JSON.stringify(byPath[t.name])}`);
    }
    levels.push({ streams: level, byPath });
  }
  return levels;
}

/**
 * The soak's steady load (bench/soak.ts): `streams` SSE clients and `callers` small-call clients, each back to
 * back, for `durationMs`. Counts what ran and what failed (no per-stream figures: a 10-minute run keeps none).
 */
export async function soakLoad(
  target: Target,
  key: string,
  streams: number,
  callers: number,
  durationMs: number,
): Promise<{ streamsRun: number; callsRun: number; errors: number }> {
  const until = performance.now() + durationMs;
  const agent = keepAlive();
  let streamsRun = 0;
  let callsRun = 0;
  let errors = 0;
  try {
    await Promise.all([
      ...Array.from({ length: streams }, async (_, i) => {
        await sleep(Math.random() * S3_CHUNKS * S3_DELAY_MS);
        for (let r = 0; performance.now() < until; r++) {
          const res = await sseCall(target.origin, key, `soak.${i}.${r}`, S3_CHUNKS, S3_DELAY_MS, agent);
          streamsRun++;
          if (res.error !== null || res.status !== 200) errors++;
        }
      }),
      ...Array.from({ length: callers }, async () => {
        const one = keepAlive(1);
        try {
          while (performance.now() < until) {
            const r = await post(target.origin, "/v1/chat/completions", key, SMALL_CALL, one);
            callsRun++;
            if (r.status !== 200) errors++;
          }
        } finally {
          one.destroy();
        }
      }),
    ]);
  } finally {
    agent.destroy();
  }
  return { streamsRun, callsRun, errors };
}
