/**
 * Tunnel behaviour across real processes: many concurrent streams on one agent connection, bounded memory
 * with a slow reader, cancellation that reaches the provider, no listening socket at the agent, and the
 * agent serving again after the hub restarts.
 */
import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STREAM_WINDOW_GROWN_BYTES_MAX } from "@wellspring/protocol";
import { startGatewayProc, startStack, type Stack } from "./harness.ts";
import { listeningSockets, processTree, rssBytes } from "./procfs.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ concurrentStreamsMax: 1024 });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

function chatBody(directive: string, stream = true): string {
  return JSON.stringify({ model: "gpt-4o-mini", stream, messages: [{ role: "user", content: `[mock ${directive}]` }] });
}

async function agentMainPid(): Promise<number> {
  const tree = await processTree(stack.agent.child.pid!);
  return tree.at(-1)!; // launcher → agent (main.ts)
}

async function gatewayPids(): Promise<number[]> {
  return processTree(stack.gateway.child.pid!);
}

async function treeRss(pids: number[]): Promise<number> {
  let total = 0;
  for (const p of pids) total += await rssBytes(p).catch(() => 0);
  return total;
}

describe("tunnel", () => {
  it("200 concurrent streams complete interleaved beside a large body, none waiting behind it", async () => {
    // One 100 MB non-streamed response in flight the whole time.
    const bigStart = Date.now();
    const big = fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: chatBody("chunks=100 bytes=104857600", false),
    }).then(async (r) => ({ status: r.status, bytes: (await r.arrayBuffer()).byteLength, ms: Date.now() - bigStart }));
    // 200 SSE streams of 60 chunks paced 50 ms apart: STREAM_MS each, long enough for all to be open at once.
    const STREAM_MS = 60 * 50;
    const streams = Array.from({ length: 200 }, (_, i) => {
      const startedAt = Date.now();
      return fetch(`${stack.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
        body: chatBody(`chunks=60 delay_ms=50 n=${i}`),
      }).then(async (r) => {
        const ttfbMs = Date.now() - startedAt;
        const text = await r.text();
        return { status: r.status, text, ttfbMs, ms: Date.now() - startedAt };
      });
    });
    const results = await Promise.all(streams);
    const bigResult = await big;
    expect(bigResult.status).toBe(200);
    expect(bigResult.bytes).toBeGreaterThan(100 * 1024 * 1024);
    const expected = Array.from({ length: 60 }, (_, i) => `"content":"w${i} "`);
    for (const r of results) {
      expect(r.status).toBe(200);
      for (const piece of expected) expect(r.text).toContain(piece);
      expect(r.text.endsWith("data: [DONE]\n\n")).toBe(true);
    }
    // Interleaved: the streams were open at the provider together, each took about its own pacing (3 s),
    // and none waited for the big body.
    const peak = Math.max(...stack.mock.requests.slice(-201).map((r) => r.concurrentAtStart));
    const sorted = results.map((r) => r.ms).sort((a, b) => a - b);
    const ttfb = results.map((r) => r.ttfbMs).sort((a, b) => a - b);
    console.log(
      `200 streams: peak concurrency ${peak}, duration p50 ${sorted[100]} ms max ${sorted[199]} ms, ttfb p50 ${ttfb[100]} ms max ${ttfb[199]} ms; 100 MB body ${bigResult.ms} ms`,
    );
    expect(peak).toBeGreaterThanOrEqual(190);
    // No stream waited for the big body to finish (head-of-line blocking would push every first byte past it).
    expect(ttfb[199]!).toBeLessThan(bigResult.ms);
    // Concurrent, not queued: served one after another, 200 streams of 3 s would take 600 s (a few at a time,
    // minutes). Their speed on 2 shared cores is the benchmark's business (S3), so the bound here is loose.
    expect(sorted[199]!).toBeLessThan(10 * STREAM_MS);
  }, 60_000);

  it("a client that stops reading holds gateway and agent memory to the flow-control windows", async () => {
    const agentPid = await agentMainPid();
    const gwPids = await gatewayPids();
    const before = { agent: await rssBytes(agentPid), gateway: await treeRss(gwPids) };
    const size = 200 * 1024 * 1024;
    const req = http.request(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
    });
    req.end(chatBody(`chunks=400 bytes=${size}`, false));
    const res = await new Promise<http.IncomingMessage>((r) => req.on("response", r));
    expect(res.statusCode).toBe(200);
    res.pause(); // the user reads nothing
    // Wait until the provider has stopped sending: the same count over four reads 250 ms apart.
    const record = stack.mock.requests.at(-1)!;
    let sentWhilePaused = -1;
    for (let unchanged = 0, deadline = Date.now() + 20_000; unchanged < 4 && Date.now() < deadline;) {
      await new Promise((r) => setTimeout(r, 250));
      unchanged = record.responseBytesSoFar === sentWhilePaused ? unchanged + 1 : 0;
      sentWhilePaused = record.responseBytesSoFar;
    }
    const after = { agent: await rssBytes(agentPid), gateway: await treeRss(gwPids) };
    const metrics = await (await fetch(`${stack.gateway.adminOrigin}/metrics`)).text();
    const held = Number(/wellspring_tunnel_held_response_bytes (\d+)/.exec(metrics)?.[1]);
    // The provider stopped: only windows and socket buffers' worth left it, not the 200 MB body.
    expect(record.responseBytesSoFar).toBe(sentWhilePaused);
    expect(sentWhilePaused).toBeLessThan(32 * 1024 * 1024);
    // One stream window: 256 KiB, or what it grew to while the user's socket buffers still took bytes fast.
    expect(held).toBeLessThanOrEqual(STREAM_WINDOW_GROWN_BYTES_MAX);
    expect(after.agent - before.agent).toBeLessThan(48 * 1024 * 1024);
    expect(after.gateway - before.gateway).toBeLessThan(48 * 1024 * 1024);
    // Reading resumes and the whole body arrives.
    let received = 0;
    res.on("data", (c: Buffer) => (received += c.length));
    res.resume();
    await new Promise((r) => res.on("end", r));
    expect(received).toBe(record.responseBytes);
    expect(received).toBeGreaterThanOrEqual(size);
  }, 60_000);

  for (const when of ["mid-stream", "before the first byte"] as const) {
    it(`a client that disconnects ${when} makes the provider see its request cancelled within 100 ms`, async () => {
      const marker = `cancel_${when.length}_${Date.now()}`;
      // Records are stamped by the gateway's clock (the same machine's): this request's is the only one after this.
      const startedAfter = new Date(Date.now() - 1);
      const directive = when === "mid-stream" ? `chunks=1000 delay_ms=20 tag=${marker}` : `first_delay_ms=30000 tag=${marker}`;
      const controller = new AbortController();
      const res = fetch(`${stack.baseUrl}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: `[mock ${directive}] ${marker}` }] }),
        signal: controller.signal,
      });
      const seen = await stack.mock.waitForRequest(
        (r) => r.requestBytes > 0 && r.finishedAt === null && r.cancelledAt === null && r.startedAt > Date.now() - 5000,
        5000,
      );
      if (when === "mid-stream") {
        const r = await res;
        const reader = r.body!.getReader();
        await reader.read();
        await reader.read();
      } else {
        await new Promise((r) => setTimeout(r, 200));
        expect(seen.status).toBe(0); // nothing answered yet
      }
      const abortedAt = Date.now();
      controller.abort();
      await res.catch(() => {});
      const cancelled = await stack.mock.waitForCancel((r) => r.id === seen.id, 2000);
      const latency = cancelled.cancelledAt! - abortedAt;
      console.log(`cancel ${when}: provider saw the cancel ${latency} ms after the client closed`);
      expect(latency).toBeLessThan(100);
      // This request's record says the client cancelled (records are written in batches: wait for it).
      let rows: { endCause: string }[] = [];
      for (let i = 0; i < 100 && rows.length === 0; i++) {
        rows = await stack.db.requestRecord.findMany({ where: { keyId: stack.keyId, startedAt: { gte: startedAfter } } });
        if (rows.length === 0) await new Promise((r) => setTimeout(r, 50));
      }
      expect(rows).toHaveLength(1);
      expect(rows[0]!.endCause).toBe("client_cancelled");
    });
  }

  it("the agent process holds no listening socket", async () => {
    const pids = await processTree(stack.agent.child.pid!);
    expect(pids.length).toBeGreaterThanOrEqual(2); // launcher and agent
    for (const pid of pids) expect(await listeningSockets(pid)).toEqual([]);
    // The check itself works: the gateway does listen.
    const gwListening = (await Promise.all((await gatewayPids()).map(listeningSockets))).flat();
    expect(gwListening.length).toBeGreaterThanOrEqual(2);
  });

  it("the agent serves again after the hub restarts", async () => {
    const { apiOrigin, agentOrigin, dataDir } = stack.gateway;
    await stack.gateway.stop();
    await new Promise((r) => setTimeout(r, 300));
    const apiPort = new URL(apiOrigin).port;
    const agentPort = new URL(agentOrigin).port;
    stack.gateway = await startGatewayProc(stack.database.url, { GATEWAY_PORT: apiPort, AGENT_PORT: agentPort }, dataDir);
    await stack.waitForModel("gpt-4o-mini", 40_000);
    const res = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: chatBody("chunks=3", false),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe("w0 w1 w2 ");
  }, 60_000);
});
