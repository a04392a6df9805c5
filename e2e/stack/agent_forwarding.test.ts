/**
 * What reaches a provider with the owner's key. The agent forwards only POSTs to its provider's inference
 * paths and only allowlisted query parameters, whatever its hub sends (a scripted hub drives a real agent
 * with heads the real hub never sends); the hub forwards only allowlisted query parameters and turns the
 * agent's PATH_FORBIDDEN into a clear error; the agent also refuses a body that does not match its head (a fake agent behind the real gateway shows both).
 */
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  ControlKind,
  decodeMessage,
  encodeControl,
  encodeData,
  encodeEnd,
  encodePong,
  encodeReset,
  encodeResponse,
  FrameType,
  jsonBytes,
  ResetCode,
  type RequestHead,
} from "@wellspring/protocol";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectFakeAgent, registerFakeAgent, sendAuth, startScriptedHub } from "./fake_peers.ts";
import { startAgentLauncher, startStack, type Stack } from "./harness.ts";

let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

const CHAT = JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] });
const MESSAGES = JSON.stringify({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: "hello" }] });

describe("the agent's own allowlist", () => {
  it("refuses other paths and methods with PATH_FORBIDDEN and drops query parameters, before the provider sees anything", async () => {
    const identity = JSON.parse(await readFile(join(stack.agent.dataDir, "agent.json"), "utf8")) as { hubId: string };
    const hub = await startScriptedHub(identity.hubId);
    const dataDir = await mkdtemp(join(tmpdir(), "ws-agent-allow-"));
    await cp(stack.agent.dataDir, dataDir, { recursive: true });
    await writeFile(join(dataDir, "agent.json"), JSON.stringify({ ...identity, hubUrl: hub.origin, pins: [hub.pin] }));
    const agent = startAgentLauncher(dataDir, { devUpstream: stack.mock.origin });
    try {
      await agent.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
      const session = await hub.session;
      const before = stack.mock.requests.length;
      const openai = (method: RequestHead["method"], path: string) =>
        session.request({ method, path, api: "openai", model: "gpt-4o-mini" }, method === "POST" ? CHAT : "");

      const forbidden = await Promise.all([
        openai("POST", "/v1/../organization/admin_api_keys"),
        openai("POST", "/v1/chat/completions/../../organization/admin_api_keys"),
        openai("POST", "/v1/fine_tuning/jobs"),
        openai("GET", "/v1/batches"),
        openai("POST", "/v1/chat%2fcompletions"),
        openai("GET", "/v1/chat/completions"),
        openai("DELETE", "/v1/chat/completions"),
        // The batch list is the hub's to answer (a provider's would show the owner's other batches).
        session.request({ method: "GET", path: "/v1/messages/batches", api: "anthropic", model: "claude-haiku-4-5" }, ""),
      ]);
      for (const outcome of forbidden) expect(outcome).toMatchObject({ kind: "reset", code: ResetCode.PATH_FORBIDDEN });
      expect(stack.mock.requests.length).toBe(before); // not one of them reached the provider

      expect(await openai("POST", "/v1/chat/completions?api-version=2099-01-01&organization=org_x")).toEqual({ kind: "response", status: 200 });
      expect(await session.request({ method: "POST", path: "/v1/messages?x=1&beta=true", api: "anthropic", model: "claude-haiku-4-5" }, MESSAGES)).toEqual({
        kind: "response",
        status: 200,
      });
      const seen = stack.mock.requests.slice(before).map((r) => `${r.method} ${r.path}`);
      expect(seen).toEqual(["POST /v1/chat/completions", "POST /v1/messages?beta=true"]);

      // The agent reads the body too: one that names another model than its head, or repeats a field the provider
      // would read the last of, is refused with BODY_REFUSED before the provider sees it.
      const afterAllowed = stack.mock.requests.length;
      const mismatched = await Promise.all([
        openai("POST", "/v1/chat/completions").then(() => null), // a sound one, for contrast
        session.request(
          { method: "POST", path: "/v1/chat/completions", api: "openai", model: "gpt-4o-mini" },
          JSON.stringify({ model: "gpt-4o", messages: [] }),
        ),
        session.request(
          { method: "POST", path: "/v1/chat/completions", api: "openai", model: "gpt-4o-mini" },
          `{"model":"gpt-4o-mini","messages":[]${" ".repeat(60_000)},"model":"gpt-4o"}`,
        ),
        session.request({ method: "POST", path: "/v1/messages", api: "anthropic", model: "claude-haiku-4-5" }, '{"max_tokens":5,"messages":[]}'),
      ]);
      for (const outcome of mismatched.slice(1)) expect(outcome).toMatchObject({ kind: "reset", code: ResetCode.BODY_REFUSED });
      expect(stack.mock.requests.length).toBe(afterAllowed + 1); // only the sound one reached the provider
    } finally {
      await agent.stop();
      await hub.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});

/**
 * A fake agent on the stack's gateway serving `models` (priced ones the stack's real agent does not serve, so every
 * request for them reaches it); `onOpen` answers each stream the hub opens. Resolves once the gateway routes them.
 */
async function fakeAgentServing(
  models: { provider: "openai" | "anthropic"; model: string }[],
  onOpen: (streamId: number, payload: Uint8Array, send: (frame: Uint8Array) => void) => void,
) {
  const fake = await registerFakeAgent(stack.db, stack.ownerId);
  const s = await connectFakeAgent(`${stack.gateway.agentOrigin.replace("https:", "wss:")}/agent/v1/tunnel`);
  const send = (frame: Uint8Array) => s.ws.send(frame);
  s.ws.on("message", (data: Buffer) => {
    for (const r of decodeMessage(new Uint8Array(data))) {
      if (!r.ok) continue;
      if (r.frame.type === FrameType.PING) send(encodePong(r.frame.data));
      if (r.frame.type === FrameType.OPEN) onOpen(r.frame.streamId, r.frame.payload, send);
    }
  });
  await sendAuth(s, fake);
  await s.waitForControl(ControlKind.WELCOME);
  send(
    encodeControl(
      ControlKind.INVENTORY,
      jsonBytes({ agentVersion: "fake", models: models.map((m) => ({ ...m, contextTokens: null })), keyFingerprints: [], concurrentStreamsMax: 8 }),
    ),
  );
  await stack.waitForModel(models[models.length - 1]!.model);
  return s;
}

describe("the hub's side", () => {
  it("forwards only allowlisted query parameters and answers an agent's PATH_FORBIDDEN with a clear error", async () => {
    const heads: RequestHead[] = [];
    const s = await fakeAgentServing(
      [
        { provider: "anthropic", model: "claude-3-5-haiku" },
        { provider: "openai", model: "gpt-4.1-nano" },
      ],
      (id, payload, send) => {
        heads.push(JSON.parse(new TextDecoder().decode(payload)) as RequestHead);
        send(encodeReset(id, ResetCode.PATH_FORBIDDEN, "not an inference endpoint this agent forwards"));
      },
    );
    try {
      const anthropic = await fetch(`${stack.baseUrl}/v1/messages?beta=true&x=1`, {
        method: "POST",
        headers: { "x-api-key": stack.apiKey, "content-type": "application/json", "anthropic-version": "2023-06-01" },
        body: MESSAGES.replace("claude-haiku-4-5", "claude-3-5-haiku"),
      });
      expect(anthropic.status).toBe(403);
      expect(await anthropic.json()).toEqual({
        type: "error",
        error: { type: "permission_error", message: "The agent serving this model does not forward POST /v1/messages." },
      });
      const openai = await fetch(`${stack.baseUrl}/v1/chat/completions?api-version=2099-01-01&beta=true`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
        body: CHAT.replace("gpt-4o-mini", "gpt-4.1-nano"),
      });
      expect(openai.status).toBe(403);
      expect(((await openai.json()) as { error: { code: string } }).error.code).toBe("forbidden");
      expect(heads.map((h) => h.path)).toEqual(["/v1/messages?beta=true", "/v1/chat/completions"]);
    } finally {
      s.ws.close();
    }
  }, 60_000);
  it("an agent's body that disagrees with its content-length never reaches the client as more bytes: the connection is cut", async () => {
    // A modified agent declares 10 bytes and sends a forged second response after them (response splitting on the
    // client's keep-alive connection), or declares 100 and sends 10 (the client would wait forever).
    const forged = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n{"forged": true}';
    let opens = 0;
    const s = await fakeAgentServing([{ provider: "openai", model: "gpt-4.1-nano" }], (id, _payload, send) => {
      const long = opens++ === 0;
      const body = new TextEncoder().encode(long ? `{"ok": 1}\n${forged}` : '{"ok": 1}\n');
      const headers = [
        ["content-type", "application/json"],
        ["content-length", long ? "10" : "100"],
      ];
      send(encodeResponse(id, jsonBytes({ status: 200, headers })));
      send(encodeData(id, body));
      send(encodeEnd(id, jsonBytes({ upstreamBytes: body.length, upstreamMs: 1 })));
    });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        // A raw keep-alive connection, as a pooling proxy in front of the gateway would hold it.
        const raw = await new Promise<string>((resolve, reject) => {
          const url = new URL(stack.baseUrl);
          const sock = net.connect(Number(url.port), url.hostname);
          const chunks: Buffer[] = [];
          const body = CHAT.replace("gpt-4o-mini", "gpt-4.1-nano");
          sock.on("connect", () =>
            sock.write(
              `POST /v1/chat/completions HTTP/1.1\r\nhost: ${url.host}\r\nauthorization: Bearer ${stack.apiKey}\r\ncontent-type: application/json\r\n` +
                `content-length: ${Buffer.byteLength(body)}\r\nconnection: keep-alive\r\n\r\n${body}`,
            ),
          );
          sock.on("data", (c: Buffer) => chunks.push(c));
          sock.on("error", reject);
          // Cut by the gateway: what the client got is all it will get.
          sock.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
          setTimeout(() => {
            sock.destroy();
            reject(new Error(`the gateway kept the connection open; received: ${JSON.stringify(Buffer.concat(chunks).toString("latin1"))}`));
          }, 10_000);
        });
        expect(raw).not.toContain("forged");
        expect(raw.split("HTTP/1.1 ").length - 1).toBeLessThanOrEqual(1);
      }
      expect(opens).toBe(2);
    } finally {
      s.ws.close();
    }
  }, 60_000);
});
