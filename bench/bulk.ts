/**
 * S4 — bulk beside streams: a 50 MB upload (audio transcription) and a 50 MB download (speech) at once,
 * while 200 SSE streams run and one client reads another 50 MB download slowly. Measured: upload and
 * download MB/s, how much the SSE gaps grow while the bulk transfers run (against the same streams just
 * before), and the peak resident memory of the proxy processes — which flow control should bound by the
 * windows, not by the size of the bodies.
 */
import http from "node:http";
import type { Generator } from "./generator.ts";
import { contentGaps, keepAlive, mib, pct, post, rssSampler, sleep, type Pct, type SseResult, type Target } from "./lib.ts";
import { S3_CHUNKS, sseLoad, STALL_GAP_MS } from "./sse.ts";

export const BULK_BYTES = 50 * 1024 * 1024;
export const S4_STREAMS = 200;
/** The slow reader's pace, bytes per second. */
export const SLOW_READER_BYTES_PER_SECOND = 256 * 1024;
/** SSE streams run alone this long before the bulk transfers start, ms (the baseline gaps). */
const BASELINE_MS = 2_000;

export interface S4Figures {
  uploadMBps: number;
  downloadMBps: number;
  gapBeforeMs: Pct;
  gapDuringMs: Pct;
  stalls: number;
  sseErrors: number;
  /** Peak resident memory of each proxy process during the scenario, and before it, MiB. */
  rssPeakMiB: Record<string, number>;
  rssBeforeMiB: Record<string, number>;
  slowReaderMiB: number;
}

function multipart(bytes: number): { body: Buffer; contentType: string } {
  const boundary = "----wellspring-bench-boundary";
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="audio.mp3"\r\nContent-Type: audio/mpeg\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { body: Buffer.concat([head, Buffer.alloc(bytes, 0x5a), tail]), contentType: `multipart/form-data; boundary=${boundary}` };
}

const speechBody = (bytes: number) => JSON.stringify({ model: "tts-1", voice: "alloy", input: `[mock bytes=${bytes}] Read this aloud.` });

/** Downloads a large speech response at SLOW_READER_BYTES_PER_SECOND until `stop()`; returns bytes read. */
function slowReader(origin: string, key: string): { stop(): number } {
  let read = 0;
  const body = speechBody(BULK_BYTES);
  const started = performance.now();
  const req = http.request(
    `${origin}/v1/audio/speech`,
    {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    },
    (res) => {
      res.on("data", (c: Buffer) => {
        read += c.length;
        const aheadMs = (read / SLOW_READER_BYTES_PER_SECOND) * 1000 - (performance.now() - started);
        if (aheadMs > 0) {
          res.pause();
          setTimeout(() => res.resume(), aheadMs);
        }
      });
      res.on("error", () => {});
    },
  );
  req.on("error", () => {});
  req.end(body);
  return {
    stop() {
      req.destroy();
      return read;
    },
  };
}

/** Gaps between paced events that ended inside [from, to) (performance.now() times). */
function gapsWithin(results: SseResult[], from: number, to: number): number[] {
  const out: number[] = [];
  for (const r of results) {
    const gaps = contentGaps(r, S3_CHUNKS);
    for (let i = 0; i < gaps.length; i++) {
      const at = r.startedAt + r.eventAtMs[i + 2]!;
      if (at >= from && at < to) out.push(gaps[i]!);
    }
  }
  return out;
}

/** The client side of S4 (runs in the load generator): streams, then the bulk transfers beside them. */
export async function bulkClients(
  target: Target,
  key: string,
): Promise<{
  uploadMBps: number;
  downloadMBps: number;
  gapsBefore: number[];
  gapsDuring: number[];
  sseErrors: number;
  slowReaderMiB: number;
}> {
  let stop = false;
  const streams = sseLoad(target, key, S4_STREAMS, 0, "s4", () => stop);
  await sleep(BASELINE_MS);
  const bulkStart = performance.now();
  const slow = slowReader(target.origin, key);
  const { body, contentType } = multipart(BULK_BYTES);
  const agent = keepAlive();
  const timed = async (f: () => Promise<{ status: number; bytes: number }>, bytes: number) => {
    const t0 = performance.now();
    const r = await f();
    if (r.status !== 200) throw new Error(`S4 ${target.name}: bulk call answered ${r.status}`);
    return +(bytes / 2 ** 20 / ((performance.now() - t0) / 1000)).toFixed(1);
  };
  const [uploadMBps, downloadMBps] = await Promise.all([
    timed(() => post(target.origin, "/v1/audio/transcriptions", key, body, agent, contentType), body.length),
    timed(async () => {
      const r = await post(target.origin, "/v1/audio/speech", key, speechBody(BULK_BYTES), agent);
      if (r.status === 200 && r.bytes !== BULK_BYTES) throw new Error(`S4 ${target.name}: downloaded ${r.bytes} of ${BULK_BYTES} bytes`);
      return r;
    }, BULK_BYTES),
  ]);
  const bulkEnd = performance.now();
  agent.destroy();
  const slowRead = slow.stop();
  stop = true;
  const results = await streams;
  return {
    uploadMBps,
    downloadMBps,
    gapsBefore: gapsWithin(results, 0, bulkStart),
    gapsDuring: gapsWithin(results, bulkStart, bulkEnd),
    sseErrors: results.filter((r) => r.error !== null || r.status !== 200).length,
    slowReaderMiB: mib(slowRead),
  };
}

/** S4 for one path: the load generator runs the clients while this thread samples the proxies' memory. */
export async function runS4(gen: Generator, target: Target, key: string, processes: Record<string, number[]>): Promise<S4Figures> {
  const baseline = rssSampler(processes);
  await sleep(60);
  const before = Object.fromEntries(Object.entries(await baseline.stop()).map(([k, v]) => [k, mib(v)]));
  const sampler = rssSampler(processes);
  const c = await gen.call("bulkClients", target, key);
  const peak = await sampler.stop();
  return {
    uploadMBps: c.uploadMBps,
    downloadMBps: c.downloadMBps,
    gapBeforeMs: pct(c.gapsBefore),
    gapDuringMs: pct(c.gapsDuring),
    stalls: [...c.gapsBefore, ...c.gapsDuring].filter((g) => g > STALL_GAP_MS).length,
    sseErrors: c.sseErrors,
    rssPeakMiB: Object.fromEntries(Object.entries(peak).map(([k, v]) => [k, mib(v)])),
    rssBeforeMiB: before,
    slowReaderMiB: c.slowReaderMiB,
  };
}
