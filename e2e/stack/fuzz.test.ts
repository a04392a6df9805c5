/**
 * Malformed frames from a live peer never crash either side: a fake agent fuzzes the real gateway, and a fake
 * hub fuzzes the real Deno agent. Each side closes or resets with a documented code and keeps serving.
 */
import { cp, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import type WebSocket from "ws";
import {
  ControlKind,
  decodeMessage,
  encodeControl,
  encodeData,
  encodeEnd,
  encodeOpen,
  encodeReset,
  encodeWindow,
  FrameType,
  jsonBytes,
  PROTOCOL_VERSION,
  randomBytes,
  toBase64Url,
} from "@wellspring/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectFakeAgent, registerFakeAgent, sendAuth, SETTINGS, startFakeHub } from "./fake_peers.ts";
import { startAgentLauncher, startStack, type Stack } from "./harness.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

/** Hostile frames: random bytes, valid frames with random fields, and valid frames with bytes mutated. */
function hostileFrame() {
  const sid = fc.integer({ min: 0, max: 40 });
  const valid = fc.oneof(
    fc.tuple(sid, fc.uint8Array({ maxLength: 300 })).map(([s, p]) => (s > 0 ? encodeOpen(s, p) : encodeData(1, p))),
    fc.tuple(fc.integer({ min: 1, max: 40 }), fc.uint8Array({ maxLength: 300 })).map(([s, p]) => encodeData(s, p)),
    fc.integer({ min: 1, max: 40 }).map((s) => encodeEnd(s, jsonBytes({ upstreamBytes: -1 }))),
    fc.tuple(fc.integer({ min: 1, max: 40 }), fc.nat()).map(([s, c]) => encodeReset(s, c, "fuzz")),
    fc.tuple(sid, fc.integer({ min: 1, max: 2 ** 31 - 1 })).map(([s, n]) => encodeWindow(s, n)),
    fc.tuple(fc.constantFrom(...Object.values(ControlKind)), fc.uint8Array({ maxLength: 200 })).map(([k, p]) => encodeControl(k, p)),
    fc.constant(encodeControl(ControlKind.INVENTORY, jsonBytes({ agentVersion: 1, models: "all" }))),
  );
  return fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    valid,
    fc.tuple(valid, fc.nat(), fc.integer({ min: 0, max: 255 })).map(([f, at, v]) => {
      const copy = f.slice();
      copy[at % copy.length] = v;
      return copy;
    }),
  );
}

function documentedClose(code: number): boolean {
  return code === 1000 || code === 1002 || code === 1006 || code === 1009 || (code >= 4000 && code <= 4050);
}

describe("fuzzing live peers", () => {
  it("the gateway survives 2,000 hostile frames from authenticated agents and keeps serving", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const tunnelUrl = `${stack.gateway.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`;
    const batches = fc.sample(fc.array(hostileFrame(), { minLength: 50, maxLength: 50 }), { numRuns: 40, seed: 20261129 });
    const closeCodes: number[] = [];
    for (const batch of batches) {
      const s = await connectFakeAgent(tunnelUrl);
      await sendAuth(s, agent);
      await s.waitForControl(ControlKind.WELCOME);
      for (const frame of batch) if (s.ws.readyState === s.ws.OPEN) s.ws.send(frame);
      if (s.ws.readyState === s.ws.OPEN) s.ws.send("a text message");
      const [code] = await s.closed;
      closeCodes.push(code);
    }
    expect(closeCodes.every(documentedClose), `close codes: ${closeCodes.join(",")}`).toBe(true);
    expect(stack.gateway.child.exitCode).toBeNull();
    expect((await fetch(`${stack.baseUrl}/healthz`)).status).toBe(200);
    const res = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "[mock chunks=2]" }] }),
    });
    expect(res.status).toBe(200);
  }, 120_000);

  it("the agent survives hostile frames from a hub it trusts, reconnecting each time", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "ws-agent-fuzz-"));
    await cp(stack.agent.dataDir, dataDir, { recursive: true });
    const identity = JSON.parse(await readFile(join(dataDir, "agent.json"), "utf8")) as { hubId: string };
    const batches = fc.sample(fc.array(hostileFrame(), { minLength: 40, maxLength: 40 }), { numRuns: 25, seed: 42 });
    let served = 0;
    const closes: number[] = [];
    const fake = await startFakeHub((ws: WebSocket) => {
      const batch = batches[served++ % batches.length]!;
      ws.on("close", (code) => closes.push(code));
      ws.on("message", (data: Buffer) => {
        // The agent may send several frames in one message; the fuzzed hub answers its AUTH.
        const r = decodeMessage(new Uint8Array(data)).find((x) => x.ok && x.frame.type === FrameType.CONTROL && x.frame.kind === ControlKind.AUTH);
        if (!r) return;
        ws.send(
          encodeControl(
            ControlKind.WELCOME,
            jsonBytes({ agentId: "agt_x", sessionId: "ses_fuzz", serverTimeMs: Date.now(), heartbeatIntervalMs: 15_000, settings: SETTINGS }),
          ),
        );
        for (const frame of batch) if (ws.readyState === ws.OPEN) ws.send(frame);
        setTimeout(() => ws.terminate(), 300);
      });
      ws.send(
        encodeControl(
          ControlKind.CHALLENGE,
          jsonBytes({
            protocolVersion: PROTOCOL_VERSION,
            hubId: identity.hubId,
            sessionId: "ses_fuzz",
            nonce: toBase64Url(randomBytes(32)),
            issuedAtMs: Date.now(),
            settings: SETTINGS,
          }),
        ),
      );
    });
    await writeFile(join(dataDir, "agent.json"), JSON.stringify({ ...identity, hubUrl: fake.origin, pins: [fake.pin] }));
    const proc = startAgentLauncher(dataDir, { devUpstream: stack.mock.origin });
    const until = Date.now() + 60_000;
    while (fake.connections < 25 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    expect(fake.connections).toBeGreaterThanOrEqual(25);
    expect(proc.child.exitCode).toBeNull(); // still running, still reconnecting
    expect(proc.lines.some((l) => /Uncaught|panicked/.test(l))).toBe(false);
    await proc.stop();
    await fake.close();
  }, 90_000);
});
