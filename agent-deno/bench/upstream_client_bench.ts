/**
 * The agent's provider call alone, `fetch` against the agent's own client (src/upstream_http.ts): CPU of this
 * Deno process per 1,000 small calls at concurrency 32 (the bench's S2 point) and the median of one call at
 * concurrency 1, against a Node keep-alive server in another process (its CPU is not counted). Each mode runs
 * twice, alternating, so drift on a shared machine shows. Run under the heavy lock:
 *   ../node_modules/.bin/deno run -A bench/upstream_client_bench.ts [requests]
 */
import process from "node:process";
import { headWithBody, requestHead, ResponseParser, splitUrl, UpstreamPool } from "../src/upstream_http.ts";

const N = Number(Deno.args[0] ?? 4000);
const CONCURRENCY = 32;
const BODY = new TextEncoder().encode(JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(900) }] }));
const ANSWER = JSON.stringify({ id: "chatcmpl-1", object: "chat.completion", choices: [{ message: { role: "assistant", content: "y".repeat(400) } }] });

const server = new Deno.Command("node", {
  args: [
    "-e",
    `const http = require("node:http");
     const answer = ${JSON.stringify(ANSWER)};
     http.createServer((req, res) => { req.resume(); req.on("end", () => { res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(answer) }); res.end(answer); }); })
       .listen(0, "127.0.0.1", function () { console.log(this.address().port); });`,
  ],
  stdout: "piped",
}).spawn();
const reader = server.stdout.getReader();
const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
const url = `http://127.0.0.1:${port}/v1/chat/completions`;
const own: [string, string][] = [
  ["authorization", "Bearer sk-test"],
  ["accept-encoding", "identity"],
];
const hubHeaders: [string, string][] = [["content-type", "application/json"]];

/** The call as the agent made it with fetch (stream.ts before issue 17). */
async function viaFetch(): Promise<number> {
  const headers = new Headers();
  for (const [n, v] of hubHeaders) headers.append(n, v);
  for (const [n, v] of own) headers.set(n, v);
  headers.set("content-length", String(BODY.length));
  const response = await fetch(url, { method: "POST", headers, body: BODY, redirect: "manual" });
  const out: [string, string][] = [];
  response.headers.forEach((v, n) => out.push([n, v]));
  let bytes = 0;
  const r = response.body!.getReader();
  for (;;) {
    const { value, done } = await r.read();
    if (done) break;
    bytes += value.length;
  }
  return bytes;
}

const pool = new UpstreamPool();
const { origin, target } = splitUrl(url);

/** The same call through the agent's client (what AgentStream.run does around the tunnel frames). */
async function viaClient(): Promise<number> {
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
}

async function run(call: () => Promise<number>, n: number, concurrency: number): Promise<number[]> {
  const latencies: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < n) {
        const t0 = performance.now();
        const bytes = await call();
        if (bytes !== ANSWER.length) throw new Error(`answer of ${bytes} bytes`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

const modes = { fetch: viaFetch, client: viaClient } as const;
for (const call of Object.values(modes)) await run(call, 500, CONCURRENCY);
const result: Record<string, { cpuMsPer1000: number[]; p50MsAtConcurrency1: number[] }> = {
  fetch: { cpuMsPer1000: [], p50MsAtConcurrency1: [] },
  client: { cpuMsPer1000: [], p50MsAtConcurrency1: [] },
};
for (let round = 0; round < 2; round++) {
  for (const [name, call] of Object.entries(modes)) {
    const before = process.cpuUsage();
    await run(call, N, CONCURRENCY);
    const used = process.cpuUsage(before);
    result[name]!.cpuMsPer1000.push(+(((used.user + used.system) / 1000 / N) * 1000).toFixed(1));
    const one = await run(call, 1000, 1);
    result[name]!.p50MsAtConcurrency1.push(+one[500]!.toFixed(3));
  }
}
console.log(JSON.stringify({ at: new Date().toISOString(), requests: N, concurrency: CONCURRENCY, ...result }));
pool.close();
server.kill();
Deno.exit(0);
