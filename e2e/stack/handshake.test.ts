/**
 * Identity on both ends. The hub refuses forged, replayed, stale, wrong-hub, unknown and revoked
 * handshakes; the agent refuses a hub whose TLS key is not pinned (even one a trusted CA vouches for)
 * and a hub whose id is not the one it enrolled with.
 */
import { execFileSync } from "node:child_process";
import { mkdtemp, readFile, writeFile, cp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CloseCode,
  ControlKind,
  encodeControl,
  generateAgentKeyPair,
  jsonBytes,
  PROTOCOL_VERSION,
  randomBytes,
  toBase64Url,
  welcome,
  parseJson,
} from "@wellspring/protocol";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectFakeAgent, registerFakeAgent, sendAuth, SETTINGS, startFakeHub } from "./fake_peers.ts";
import { startAgentLauncher, startAgentProc, startStack, type Stack } from "./harness.ts";

let stack: Stack;
let tunnelUrl: string;
beforeAll(async () => {
  stack = await startStack();
  tunnelUrl = `${stack.gateway.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`;
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

describe("the hub verifies agents", () => {
  it("accepts a correct signature and sends WELCOME", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const s = await connectFakeAgent(tunnelUrl);
    await sendAuth(s, agent);
    const w = parseJson(welcome, await s.waitForControl(ControlKind.WELCOME));
    expect(w.agentId).toBe(agent.id);
    expect(w.sessionId).toBe(s.challenge.sessionId);
    s.ws.close();
  });

  it("admits an agent without its edge ledger only as a development agent", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const plain = await connectFakeAgent(tunnelUrl);
    await sendAuth(plain, agent, { extra: { ledger: false } });
    expect(await plain.closed).toEqual([CloseCode.PROTOCOL_ERROR, "ledger: false is for development agents only"]);
    // This stack's hub runs in development mode (a production hub refuses `development: true` itself, close 4033).
    const dev = await connectFakeAgent(tunnelUrl);
    await sendAuth(dev, agent, { extra: { development: true, ledger: false } });
    expect(parseJson(welcome, await dev.waitForControl(ControlKind.WELCOME)).agentId).toBe(agent.id);
    dev.ws.close();
  });

  it("an agent started with --dev-no-ledger but no development upstream refuses to start", async () => {
    const proc = startAgentLauncher(stack.agent.dataDir, { noLedger: true });
    const [line] = await proc.waitForLine(/^.*"event":"launcher\.agent_stopped".*$/, 30_000);
    expect(JSON.parse(line)).toMatchObject({ exitCode: 64, reason: "fatal" });
    expect(proc.lines.join("\n")).toContain("--dev-no-ledger is for development only: it needs --dev-upstream");
    await proc.stop();
  }, 60_000);

  it("refuses a signature made with another key", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const other = await generateAgentKeyPair();
    const s = await connectFakeAgent(tunnelUrl);
    await sendAuth(s, agent, { signWith: other.pair.privateKey });
    expect((await s.closed)[0]).toBe(CloseCode.AUTH_FAILED);
  });

  it("refuses a replayed AUTH on a new session", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const first = await connectFakeAgent(tunnelUrl);
    const captured = await sendAuth(first, agent);
    await first.waitForControl(ControlKind.WELCOME);
    first.ws.close();
    // The attacker replays the captured message as is…
    const second = await connectFakeAgent(tunnelUrl);
    second.ws.send(encodeControl(ControlKind.AUTH, jsonBytes(captured)));
    expect((await second.closed)[0]).toBe(CloseCode.AUTH_FAILED);
    // …or with the new session's id and nonce pasted in: the old signature does not cover them.
    const third = await connectFakeAgent(tunnelUrl);
    third.ws.send(encodeControl(ControlKind.AUTH, jsonBytes({ ...captured, sessionId: third.challenge.sessionId, nonce: third.challenge.nonce })));
    expect((await third.closed)[0]).toBe(CloseCode.AUTH_FAILED);
    // A second AUTH on an authenticated session is refused too.
    const fourth = await connectFakeAgent(tunnelUrl);
    await sendAuth(fourth, agent);
    await fourth.waitForControl(ControlKind.WELCOME);
    fourth.ws.send(encodeControl(ControlKind.AUTH, jsonBytes(captured)));
    expect((await fourth.closed)[0]).toBe(CloseCode.PROTOCOL_ERROR);
  });

  it("refuses a stale timestamp", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const s = await connectFakeAgent(tunnelUrl);
    await sendAuth(s, agent, { timestampMs: Date.now() - 5 * 60_000 });
    expect((await s.closed)[0]).toBe(CloseCode.CLOCK_SKEW);
  });

  it("refuses a signature bound to another hub id", async () => {
    const agent = await registerFakeAgent(stack.db, stack.ownerId);
    const s = await connectFakeAgent(tunnelUrl);
    await sendAuth(s, agent, { hubId: "hub_someoneelse" });
    expect((await s.closed)[0]).toBe(CloseCode.AUTH_FAILED);
  });

  it("refuses unknown and revoked agents, and tells a suspended one", async () => {
    const unknown = { id: "agt_doesnotexist0000000", privateKey: (await generateAgentKeyPair()).pair.privateKey };
    const s1 = await connectFakeAgent(tunnelUrl);
    await sendAuth(s1, unknown);
    expect((await s1.closed)[0]).toBe(CloseCode.UNKNOWN_AGENT);
    const revoked = await registerFakeAgent(stack.db, stack.ownerId, "revoked");
    const s2 = await connectFakeAgent(tunnelUrl);
    await sendAuth(s2, revoked);
    expect((await s2.closed)[0]).toBe(CloseCode.AGENT_REVOKED);
    // A suspended agent is told so (it keeps running and asks again later), not that it is revoked.
    const suspended = await registerFakeAgent(stack.db, stack.ownerId, "suspended");
    const s3 = await connectFakeAgent(tunnelUrl);
    await sendAuth(s3, suspended);
    expect((await s3.closed)[0]).toBe(CloseCode.AGENT_SUSPENDED);
  });

  it("refuses any frame before AUTH", async () => {
    const s = await connectFakeAgent(tunnelUrl);
    s.ws.send(encodeControl(ControlKind.INVENTORY, jsonBytes({ agentVersion: "x", models: [], keyFingerprints: [], concurrentStreamsMax: 1 })));
    expect((await s.closed)[0]).toBe(CloseCode.PROTOCOL_ERROR);
  });
});

async function agentCopy(pins: string[], hubUrl?: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "ws-agent-copy-"));
  await cp(stack.agent.dataDir, dir, { recursive: true });
  const identity = JSON.parse(await readFile(join(dir, "agent.json"), "utf8")) as Record<string, unknown>;
  await writeFile(join(dir, "agent.json"), JSON.stringify({ ...identity, pins, ...(hubUrl ? { hubUrl } : {}) }));
  return dir;
}

describe("the agent verifies the hub", () => {
  it("refuses a hub whose key is not pinned, even one a trusted CA vouches for", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ws-ca-"));
    const run = (args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
    await writeFile(join(dir, "leaf.ext"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n");
    run([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=Test Trusted CA",
      "-addext",
      "basicConstraints=critical,CA:TRUE",
    ]);
    run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "hub.key", "-out", "hub.csr", "-subj", "/CN=127.0.0.1"]);
    run(["x509", "-req", "-in", "hub.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "hub.pem", "-days", "2", "-extfile", "leaf.ext"]);
    // A hub impostor with a CA-signed certificate; the agent's Deno trusts that CA (DENO_CERT).
    const https = await import("node:https");
    const { readFileSync } = await import("node:fs");
    let upgrades = 0;
    const impostor = https.createServer({ cert: readFileSync(join(dir, "hub.pem")), key: readFileSync(join(dir, "hub.key")) }, (_req, res) =>
      res.end("impostor"),
    );
    impostor.on("upgrade", (_req, socket) => {
      upgrades++;
      socket.destroy();
    });
    await new Promise<void>((r) => impostor.listen(0, "127.0.0.1", r));
    const origin = `https://127.0.0.1:${(impostor.address() as { port: number }).port}`;
    // Control: the CA really is trusted by this Deno (fetch over system trust + DENO_CERT succeeds).
    // (async: the impostor runs in this process and must keep answering)
    const { execFile } = await import("node:child_process");
    const probe = await new Promise<string>((resolve, reject) =>
      execFile(
        join(process.cwd(), "node_modules/.bin/deno"),
        ["eval", `const r = await fetch("${origin}/"); console.log("trusted", r.status); await r.body?.cancel();`],
        { env: { ...process.env, DENO_CERT: join(dir, "ca.pem") }, timeout: 20_000 },
        (error, stdout, stderr) => (error ? reject(new Error(stderr || error.message)) : resolve(stdout)),
      ),
    );
    expect(probe).toMatch(/trusted \d{3}/);
    const dataDir = await agentCopy([stack.gateway.pin], origin);
    const proc = startAgentLauncher(dataDir, { devUpstream: stack.mock.origin, env: { DENO_CERT: join(dir, "ca.pem") } });
    await proc.waitForLine(/pinned key does not match/, 20_000);
    expect(upgrades).toBe(0); // not one byte of the WebSocket handshake reached the impostor
    expect(proc.lines.some((l) => l.includes("WELLSPRING_AGENT_READY"))).toBe(false);
    await proc.stop();
    impostor.close();
  }, 60_000);

  it("connects when the pin matches the backup pin (key rotation)", async () => {
    const dataDir = await agentCopy(["sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", stack.gateway.pin]);
    // One identity serves once at a time (identity.test.ts): the original steps aside for its copy.
    await stack.agent.stop();
    const agent = await startAgentProc(dataDir, "copy", stack.mock.origin);
    expect(agent.lines.some((l) => l.includes("WELLSPRING_AGENT_READY"))).toBe(true);
    await agent.stop();
    stack.agent = await startAgentProc(stack.agent.dataDir, stack.agent.agentId, stack.mock.origin);
    await stack.waitForModel("gpt-4o-mini");
  }, 90_000);

  it("refuses a hub that presents another hub id, and never signs for it", async () => {
    let authSeen = false;
    const fake = await startFakeHub((ws) => {
      ws.on("message", () => (authSeen = true));
      ws.send(
        encodeControl(
          ControlKind.CHALLENGE,
          jsonBytes({
            protocolVersion: PROTOCOL_VERSION,
            hubId: "hub_impostor",
            sessionId: "ses_x",
            nonce: toBase64Url(randomBytes(32)),
            issuedAtMs: Date.now(),
            settings: SETTINGS,
          }),
        ),
      );
    });
    const dataDir = await agentCopy([fake.pin], fake.origin);
    const proc = startAgentLauncher(dataDir, { devUpstream: stack.mock.origin });
    await proc.waitForLine(/tunnel.wrong_hub/, 20_000);
    expect(authSeen).toBe(false);
    await proc.stop();
    await fake.close();
  }, 60_000);
});
