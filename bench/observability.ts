/**
 * `npm run bench:observability`: what the request path pays for observability, per call, on this machine —
 * the request histogram/counter observation made once per request, the tunnel frame count made once per frame,
 * and the access log line (serialised, written to /dev/null). Prints µs per call (median of 5 runs).
 */
import { openSync, writeSync } from "node:fs";
import { observeBilling, observeRequestEnd } from "../gateway/src/observability/metrics.ts";
import { countFrameIn, countFrameOut, countMessageIn } from "../gateway/src/observability/tunnel_counters.ts";
import { createLogger } from "../gateway/src/log.ts";

const N = 200_000;
const ROUTES = ["/v1/chat/completions", "/v1/messages", "/v1/embeddings"];
const MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "text-embedding-3-small"];

function perCallUs(fn: (i: number) => void): number {
  for (let i = 0; i < 20_000; i++) fn(i); // warm up
  const runs: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) fn(i);
    runs.push(Number(process.hrtime.bigint() - t) / 1000 / N);
  }
  return runs.sort((a, b) => a - b)[2]!;
}

const devNull = openSync("/dev/null", "w");
const log = createLogger({ proc: "gateway" }, "info", (line) => writeSync(devNull, line + "\n"));
const frame = new Uint8Array(64);
frame[1] = 3;

const figures = {
  requestObservationUs: perCallUs((i) => {
    observeRequestEnd({
      route: ROUTES[i % 3]!,
      model: MODELS[i % 4]!,
      status: 200,
      endCause: "completed",
      streamed: i % 2 === 0,
      durationMs: 120 + (i % 50),
      firstByteMs: 40,
    });
    observeBilling("held");
  }),
  tunnelFrameCountUs: perCallUs(() => {
    countMessageIn(64);
    countFrameIn(3);
    countFrameOut(frame);
  }),
  accessLogLineUs: perCallUs((i) => {
    log.info("request.end", {
      requestId: "req_01JEXAMPLE0000000000000000",
      keyId: "key_01JEXAMPLE000000000000000",
      agentId: "agt_01JEXAMPLE00000000000000",
      route: ROUTES[i % 3],
      model: MODELS[i % 4],
      status: 200,
      endCause: "completed",
      streamed: true,
      bytesIn: 812,
      bytesOut: 20_480,
      durationMs: 1234,
      firstByteMs: 210,
    });
  }),
};
console.log(JSON.stringify(figures, null, 2));
