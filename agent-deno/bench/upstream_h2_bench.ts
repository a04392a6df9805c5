/**
 * HTTP/2 to providers — does it pay? (issue 17 item 1: "HTTP/2 to providers where it pays (measure)").
 * The agent's provider call over TLS three ways, against one Node `http2` server (TLS, `allowHTTP1`) in another
 * process whose CPU is not counted:
 *   - `client`: the agent's own HTTP/1.1 client (src/upstream_http.ts) on Deno's TLS, a keep-alive pool;
 *   - `fetch-h1`: Deno's `fetch` restricted to HTTP/1.1;
 *   - `fetch-h2`: Deno's `fetch` restricted to HTTP/2 (one connection, multiplexed streams) — the only HTTP/2 client
 *     Deno offers (hyper inside the runtime).
 * For each: CPU of this process per 1,000 small calls at concurrency 32, the median and p99 of one call at
 * concurrency 1, and the same for a short SSE stream (64 events). Each mode runs twice, alternating, so drift on a
 * shared machine shows. Run under the heavy lock:
 *   ../node_modules/.bin/deno run -A bench/upstream_h2_bench.ts [requests]
 */
import process from "node:process";
import { headWithBody, originConnector, requestHead, ResponseParser, splitUrl, UpstreamPool } from "../src/upstream_http.ts";
import { selfSigned } from "../src/testdata/upstream_calls.ts";

const N = Number(Deno.args[0] ?? 2000);
const CONCURRENCY = 32;
const BODY = new TextEncoder().encode(JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(900) }] }));
const ANSWER = JSON.stringify({ id: "chatcmpl-1", object: "chat.completion", choices: [{ message: { role: "assistant", content: "y".repeat(400) } }] });
const SSE_EVENTS = 64;
const SSE_EVENT = `data: ${JSON.stringify({ id: "chatcmpl-1", object: "chat.completion.chunk", choices: [{ delta: { content: "token" } }] })}\n\n`;
const SSE_BYTES = SSE_EVENTS * SSE_EVENT.length + "data: [DONE]\n\n".length;

const { cert, key } = await selfSigned("DNS:localhost");
const server = new Deno.Command("node", {
  args: [
    "-e",
    `const http2 = require("node:http2");
     const answer = ${JSON.stringify(ANSWER)}; const event = ${JSON.stringify(SSE_EVENT)};
     http2.createSecureServer({ key: ${JSON.stringify(key)}, cert: ${JSON.stringify(cert)}, allowHTTP1: true, settings: { maxConcurrentStreams: 1000 } }, (req, res) => {
       req.resume();
       req.on("end", () => {
         if (req.url.endsWith("?stream")) {
           res.writeHead(200, { "content-type": "text/event-stream" });
           let left = ${SSE_EVENTS};
           const tick = () => { if (left-- > 0) { res.write(event); setImmediate(tick); } else res.end("data: [DONE]\\n\\n"); };
           tick();
         } else {
           res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) });
           res.end(answer);
         }
       });
     }).listen(0, "127.0.0.1", function () { console.log(this.address().port); });`,
  ],
  stdout: "piped",
}).spawn();
const reader = server.stdout.getReader();
const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
const base = `https://localhost:${port}/v1/chat/completions`;
const own: [string, string][] = [
  ["authorization", "Bearer sk-test"],
  ["accept-encoding", "identity"],
];
const hubHeaders: [string, string][] = [["content-type", "application/json"]];

const h1 = Deno.createHttpClient({ caCerts: [cert], http1: true, http2: false });
const h2 = Deno.createHttpClient({ caCerts: [cert], http1: false, http2: true });

function viaFetch(client: Deno.HttpClient, url: string): () => Promise<number> {
  return async () => {
    const headers = new Headers();
    for (const [n, v] of hubHeaders) headers.append(n, v);
    for (const [n, v] of own) headers.set(n, v);
    const response = await fetch(url, { method: "POST", headers, body: BODY, redirect: "manual", client });
    let bytes = 0;
    const r = response.body!.getReader();
    for (;;) {
      const { value, done } = await r.read();
      if (done) break;
      bytes += value.length;
    }
    return bytes;
  };
}

const pool = new UpstreamPool(originConnector({ proxy: null, caCerts: [cert] }));

function viaClient(url: string): () => Promise<number> {
  const { origin, target } = splitUrl(url);
  return async () => {
    const conn = await pool.acquire(origin);
    await conn.write(headWithBody(requestHead("POST", origin, target, hubHeaders, own, BODY.length), BODY));
    const parser = new ResponseParser("POST");
    let bytes = 0;
    while (!parser.done) {
      const read = await conn.read();
      if (read === null) {
        parser.eof();
        break;
      }
      bytes += parser.feed(read).length;
    }
    if (parser.head!.keepAlive) pool.release(conn);
    else conn.close();
    return bytes;
  };
}

async function run(call: () => Promise<number>, expected: number, n: number, concurrency: number): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < n) {
        const t0 = performance.now();
        const bytes = await call();
        if (bytes !== expected) throw new Error(`answer of ${bytes} bytes, expected ${expected}`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

const modes = {
  client: { small: viaClient(base), sse: viaClient(`${base}?stream`) },
  "fetch-h1": { small: viaFetch(h1, base), sse: viaFetch(h1, `${base}?stream`) },
  "fetch-h2": { small: viaFetch(h2, base), sse: viaFetch(h2, `${base}?stream`) },
} as const;
type Figures = { cpuMsPer1000: number[]; p50MsAtConcurrency1: number[]; p99MsAtConcurrency1: number[]; sseCpuMsPer1000: number[]; sseP50Ms: number[] };
const result: Record<string, Figures> = {};
for (const [name, m] of Object.entries(modes)) {
  await run(m.small, ANSWER.length, 300, CONCURRENCY);
  await run(m.sse, SSE_BYTES, 100, CONCURRENCY);
  result[name] = { cpuMsPer1000: [], p50MsAtConcurrency1: [], p99MsAtConcurrency1: [], sseCpuMsPer1000: [], sseP50Ms: [] };
}
const cpu = async (call: () => Promise<number>, expected: number, n: number) => {
  const before = process.cpuUsage();
  await run(call, expected, n, CONCURRENCY);
  const used = process.cpuUsage(before);
  return +(((used.user + used.system) / 1000 / n) * 1000).toFixed(1);
};
for (let round = 0; round < 2; round++) {
  for (const [name, m] of Object.entries(modes)) {
    const r = result[name]!;
    r.cpuMsPer1000.push(await cpu(m.small, ANSWER.length, N));
    const one = await run(m.small, ANSWER.length, 1000, 1);
    r.p50MsAtConcurrency1.push(+one[500]!.toFixed(3));
    r.p99MsAtConcurrency1.push(+one[990]!.toFixed(3));
    r.sseCpuMsPer1000.push(await cpu(m.sse, SSE_BYTES, N / 4));
    const streams = await run(m.sse, SSE_BYTES, 200, 1);
    r.sseP50Ms.push(+streams[100]!.toFixed(3));
  }
}
console.log(JSON.stringify({ at: new Date().toISOString(), requests: N, concurrency: CONCURRENCY, sseEvents: SSE_EVENTS, ...result }));
pool.close();
h1.close();
h2.close();
server.kill();
Deno.exit(0);
