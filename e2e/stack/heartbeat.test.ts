/** Heartbeats: an agent that stops answering is dropped; a live one is kept, and learns the interval. */
import { CloseCode, ControlKind, parseJson, welcome } from "@wellspring/protocol";
import { afterAll, beforeAll, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { connectFakeAgent, registerFakeAgent, sendAuth } from "./fake_peers.ts";
import { createTestDatabase, startGatewayProc, type GatewayProc, type TestDatabase } from "./harness.ts";

let database: TestDatabase;
let gateway: GatewayProc;
let ownerId: string;
beforeAll(async () => {
  database = await createTestDatabase();
  gateway = await startGatewayProc(database.url, { TUNNEL_HEARTBEAT_INTERVAL_MS: "200", TUNNEL_HEARTBEAT_TIMEOUT_MS: "800" });
  ownerId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test` } });
}, 60_000);
afterAll(async () => {
  await gateway?.stop();
  await database?.drop();
});

it("drops an agent that goes silent, with HEARTBEAT_TIMEOUT", async () => {
  const agent = await registerFakeAgent(database.db, ownerId);
  const s = await connectFakeAgent(`${gateway.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`);
  // The fake agent sends AUTH, its last frame, and then never answers a PING.
  const started = Date.now();
  await sendAuth(s, agent);
  const w = parseJson(welcome, await s.waitForControl(ControlKind.WELCOME));
  expect(w.heartbeatIntervalMs).toBe(200);
  const [code] = await s.closed;
  expect(code).toBe(CloseCode.HEARTBEAT_TIMEOUT);
  expect(Date.now() - started).toBeGreaterThanOrEqual(800);
  expect(Date.now() - started).toBeLessThan(3000);
});

it("keeps an agent that answers its PINGs", async () => {
  const { encodePong, FrameType } = await import("@wellspring/protocol");
  const agent = await registerFakeAgent(database.db, ownerId);
  const s = await connectFakeAgent(`${gateway.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`);
  await sendAuth(s, agent);
  await s.waitForControl(ControlKind.WELCOME);
  let pongs = 0;
  // Five answered PINGs span more than the 800 ms timeout: the agent outlived it because it answered.
  const fivePongs = new Promise<void>((resolve) =>
    s.ws.on("message", (data: Buffer) => {
      if (data[1] === FrameType.PING) {
        s.ws.send(encodePong(new Uint8Array(data.subarray(12))));
        if (++pongs === 5) resolve();
      }
    }),
  );
  const started = Date.now();
  const outcome = await Promise.race([fivePongs.then(() => "alive" as const), s.closed.then(() => "closed" as const)]);
  expect(outcome).toBe("alive");
  expect(Date.now() - started).toBeGreaterThan(800);
  s.ws.close();
});
