/**
 * `npm run bench:gateways`: what forwarding costs. Two gateways share the database and Redis; one agent is
 * connected to gateway B. The same small call (S1's: ≈1 KB in, ≈0.5 KB out) is sent back to back on one
 * keep-alive connection, alternately to B (direct: the agent's own gateway) and to A (forwarded: A → gateway link
 * → B → agent), and the time to a streamed call's first byte likewise. Reported: p50/p99 of each and the added
 * latency (forwarded − direct at each percentile). Results go to bench/results/gateways.json.
 * `BENCH_GATEWAY_REQUESTS` (default 1,000 per path) sets the count.
 */
import http from "node:http";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { cpus } from "node:os";
import { newId } from "@wellspring/db";
import { issueKey } from "../gateway/src/ops/keys.ts";
import { startMockProvider } from "@wellspring/mock-provider";
import { createTestDatabase, enrollAgent, fund, startAgentProc, startGatewayProc, waitFor } from "../e2e/stack/harness.ts";
import { keepAlive, pct, post, sseBody, type Pct } from "./lib.ts";

const REQUESTS = Number(process.env.BENCH_GATEWAY_REQUESTS ?? 1000);
const WARMUP = 100;
const SMALL_CALL = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "x".repeat(900) + " [mock chunks=5]" }] });

/** Time to the first body byte of a streamed call, ms. */
function firstByte(origin: string, key: string, agent: http.Agent): Promise<number> {
  const body = sseBody("ttfb", 5, 0);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let at = 0;
    const req = http.request(
      `${origin}/v1/chat/completions`,
      { method: "POST", agent, headers: { authorization: `Bearer ${key}`, "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        res.on("data", () => (at ||= performance.now() - t0));
        res.on("end", () => (res.statusCode === 200 ? resolve(at) : reject(new Error(`status ${res.statusCode}`))));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

const database = await createTestDatabase();
const mock = await startMockProvider();
const gwA = await startGatewayProc(database.url, { BILLING_ENABLED: "0" });
const gwB = await startGatewayProc(database.url, { BILLING_ENABLED: "0", HUB_ID: gwA.hubId });
try {
  const ownerId = newId("usr");
  const userId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  const key = (await issueKey(database.db, userId, "bench")).secret;
  await fund(database.url, userId, 1_000_000_000n);
  const enrolled = await enrollAgent(database.db, gwB, ownerId);
  const agent = await startAgentProc(enrolled.dataDir, enrolled.agentId, mock.origin);
  try {
    const a = keepAlive(1);
    const b = keepAlive(1);
    await waitFor(async () => (await post(gwA.apiOrigin, "/v1/chat/completions", key, SMALL_CALL, a)).status === 200, 20_000);
    for (let i = 0; i < WARMUP; i++) {
      await post(gwA.apiOrigin, "/v1/chat/completions", key, SMALL_CALL, a);
      await post(gwB.apiOrigin, "/v1/chat/completions", key, SMALL_CALL, b);
    }
    const direct: number[] = [];
    const forwarded: number[] = [];
    const directTtfb: number[] = [];
    const forwardedTtfb: number[] = [];
    const timed = async (origin: string, agent: http.Agent, into: number[]) => {
      const t0 = performance.now();
      const r = await post(origin, "/v1/chat/completions", key, SMALL_CALL, agent);
      if (r.status !== 200) throw new Error(`${origin}: status ${r.status}`);
      into.push(performance.now() - t0);
    };
    // Alternated, so both paths see the same machine load.
    for (let i = 0; i < REQUESTS; i++) {
      await timed(gwB.apiOrigin, b, direct);
      await timed(gwA.apiOrigin, a, forwarded);
    }
    for (let i = 0; i < Math.min(REQUESTS, 300); i++) {
      directTtfb.push(await firstByte(gwB.apiOrigin, key, b));
      forwardedTtfb.push(await firstByte(gwA.apiOrigin, key, a));
    }
    const [d, f, dt, ft] = [pct(direct), pct(forwarded), pct(directTtfb), pct(forwardedTtfb)];
    const added = (x: Pct, y: Pct) => ({ p50: +(y.p50 - x.p50).toFixed(3), p99: +(y.p99 - x.p99).toFixed(3) });
    const result = {
      at: new Date().toISOString(),
      machine: { cpus: cpus().length },
      requestsPerPath: REQUESTS,
      smallCallMs: { direct: d, forwarded: f, added: added(d, f) },
      streamFirstByteMs: { direct: dt, forwarded: ft, added: added(dt, ft) },
    };
    console.log(JSON.stringify(result, null, 2));
    const dir = join(import.meta.dirname, "results");
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, "gateways.json"), JSON.stringify(result, null, 2) + "\n");
    a.destroy();
    b.destroy();
  } finally {
    await agent.stop();
  }
} finally {
  await gwA.stop();
  await gwB.stop();
  await mock.close();
  await database.drop();
}
process.exit(0);
