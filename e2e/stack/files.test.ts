/**
 * The Files API through a real stack with two Deno agents, each behind its own mock provider (one provider
 * account each: neither knows the other's files), with the official `openai` client: upload, list, retrieve,
 * content (byte-exact) and delete reach the agent that keeps the file; a chat or Responses request naming a
 * file goes to that agent even while routing prefers the other; another user's key gets OpenAI's 404; an agent
 * that is away gets 503 with Retry-After; hostile uploads (too large, stalled, repeated fields) are refused.
 * Assistants/threads and Anthropic's Files API get clear errors in each API's own shape.
 */
import { createHash, randomBytes } from "node:crypto";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import type { MockProvider } from "@wellspring/mock-provider";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { changeAgent } from "../../gateway/src/ops/agents.ts";
import { addOwnerAgent, startStack, waitFor, type OwnerAgent, type Stack } from "./harness.ts";

/** The hub's upload limit in this stack, bytes (the default is OpenAI's 512 MB). */
const UPLOAD_MAX = 8 * 1024 * 1024;
/** A stalled upload is answered after this silence, ms. */
const BODY_IDLE_MS = 1_500;

let stack: Stack;
/** The second agent (owner B), behind its own mock provider. */
let b: OwnerAgent;
let mockB: MockProvider;
let keyA: string;
let keyB: string;

const openai = (apiKey: string) => new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey, maxRetries: 0 });

const callsTo = (mock: MockProvider, path: string) => mock.requests.filter((r) => r.path.startsWith(path)).map((r) => `${r.method} ${r.path}`);
const sha256 = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

beforeAll(async () => {
  stack = await startStack({
    gatewayEnv: { BILLING_ENABLED: "0", FILE_UPLOAD_BYTES_MAX: String(UPLOAD_MAX), REQUEST_BODY_IDLE_TIMEOUT_MS: String(BODY_IDLE_MS) },
  });
  b = await addOwnerAgent(stack);
  mockB = b.mock;
  // Uploads land on a chosen agent through keys restricted to its owner; everything else uses the unrestricted key.
  keyA = (await issueKey(stack.db, stack.userId, "files-on-a", { allowedOwnerIds: [stack.ownerId] })).secret;
  keyB = (await issueKey(stack.db, stack.userId, "files-on-b", { allowedOwnerIds: [b.ownerId] })).secret;
}, 180_000);

afterAll(async () => {
  await b?.stop();
  await stack?.close();
});

describe("files live at the agent that uploaded them", () => {
  const content = randomBytes(3 * 1024 * 1024 + 17);
  let onA: OpenAI.Files.FileObject;
  let onB: OpenAI.Files.FileObject;

  beforeAll(async () => {
    onA = await openai(keyA).files.create({ file: await toFile(content, "notes-a.bin"), purpose: "user_data" });
    onB = await openai(keyB).files.create({ file: await toFile(Buffer.from("kept at B"), "notes-b.txt"), purpose: "assistants" });
  }, 60_000);

  it("an upload reaches one provider account, whole, and the hub keeps its route without the filename", async () => {
    expect(onA).toMatchObject({ object: "file", bytes: content.length, purpose: "user_data", filename: "notes-a.bin" });
    expect(onA.id).toMatch(/^file-/);
    expect(callsTo(stack.mock, "/v1/files")).toEqual(["POST /v1/files"]);
    expect(callsTo(mockB, "/v1/files")).toEqual(["POST /v1/files"]);
    const row = await stack.db.fileRoute.findUnique({ where: { fileId: onA.id } });
    expect(row).toMatchObject({ userId: stack.userId, purpose: "user_data", bytes: BigInt(content.length) });
    expect(JSON.stringify(row, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v))).not.toContain("notes-a");
  });

  it("content comes back byte-exact, and retrieve answers with the provider's object, from the agent that keeps each file", async () => {
    const client = openai(stack.apiKey);
    const body = new Uint8Array(await (await client.files.content(onA.id)).arrayBuffer());
    expect(body.length).toBe(content.length);
    expect(sha256(body)).toBe(sha256(content));
    expect(Buffer.from(await (await client.files.content(onB.id)).arrayBuffer()).toString()).toBe("kept at B");
    for (let i = 0; i < 3; i++) {
      expect(await client.files.retrieve(onA.id)).toMatchObject({ id: onA.id, filename: "notes-a.bin" });
      expect(await client.files.retrieve(onB.id)).toMatchObject({ id: onB.id, filename: "notes-b.txt" });
    }
    expect(callsTo(stack.mock, `/v1/files/${onB.id}`)).toEqual([]);
    expect(callsTo(mockB, `/v1/files/${onA.id}`)).toEqual([]);
    expect(callsTo(stack.mock, `/v1/files/${onA.id}`)).toEqual([`GET /v1/files/${onA.id}/content`, ...Array(3).fill(`GET /v1/files/${onA.id}`)]);
  });

  it("the list is the hub's: only this user's files, paged with limit and after, never a provider's list", async () => {
    const other = newId("usr");
    await stack.db.user.create({ data: { id: other, email: `${other}@user.test` } });
    const otherKey = (await issueKey(stack.db, other, "other")).secret;
    const theirs = await openai(otherKey).files.create({ file: await toFile(Buffer.from("theirs"), "t.txt"), purpose: "user_data" });
    const listed: OpenAI.Files.FileObject[] = [];
    for await (const f of openai(stack.apiKey).files.list({ limit: 1 })) listed.push(f);
    expect(listed.map((f) => f.id).sort()).toEqual([onA.id, onB.id].sort());
    expect(listed.find((f) => f.id === onA.id)).toMatchObject({ object: "file", bytes: content.length, purpose: "user_data", filename: "" });
    const assistants: string[] = [];
    for await (const f of openai(stack.apiKey).files.list({ purpose: "assistants" })) assistants.push(f.id);
    expect(assistants).toEqual([onB.id]);
    const theirList: string[] = [];
    for await (const f of openai(otherKey).files.list()) theirList.push(f.id);
    expect(theirList).toEqual([theirs.id]);
    expect([...stack.mock.requests, ...mockB.requests].filter((r) => r.method === "GET" && r.path.split("?")[0] === "/v1/files")).toEqual([]);
    const bad = await fetch(`${stack.baseUrl}/v1/files?limit=0`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: { param: "limit", type: "invalid_request_error" } });
  });

  it("a chat or Responses request naming a file reaches the agent that keeps it, even while routing prefers the other", async () => {
    // B in the discount lane: every request that may go anywhere goes to B first.
    await changeAgent(stack.db, "test", b.agentId, { discountLane: true });
    const client = openai(stack.apiKey);
    await waitFor(async () => {
      const before = mockB.requests.length;
      await client.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "who serves?" }] });
      return mockB.requests.length > before;
    }, 10_000);
    const chatsAtA = callsTo(stack.mock, "/v1/chat/completions").length;
    for (let i = 0; i < 3; i++) {
      const chat = await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [
          {
            role: "user",
            content: [
              { type: "file", file: { file_id: onA.id } },
              { type: "text", text: "summarise" },
            ],
          },
        ],
      });
      expect(chat.choices[0]!.message.content).toBeTruthy();
    }
    const response = await client.responses.create({
      model: "gpt-4o-mini",
      input: [
        {
          role: "user",
          content: [
            { type: "input_file", file_id: onA.id },
            { type: "input_text", text: "summarise" },
          ],
        },
      ],
    });
    expect(response.id).toMatch(/^resp_/);
    expect(callsTo(stack.mock, "/v1/chat/completions")).toHaveLength(chatsAtA + 3);
    expect(callsTo(stack.mock, "/v1/responses").at(-1)).toBe("POST /v1/responses");
    // Files kept by different provider accounts cannot be read by one request.
    const mixed = await client.chat.completions
      .create({
        model: "gpt-4o-mini",
        messages: [
          {
            role: "user",
            content: [
              { type: "file", file: { file_id: onA.id } },
              { type: "file", file: { file_id: onB.id } },
            ],
          },
        ],
      })
      .catch((e: unknown) => e);
    expect(mixed).toBeInstanceOf(OpenAI.BadRequestError);
    expect((mixed as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ param: "file_id" });
  });

  it("another user's key and an unknown id get OpenAI's 404 at the hub; nothing reaches a provider", async () => {
    const other = newId("usr");
    await stack.db.user.create({ data: { id: other, email: `${other}@user.test` } });
    const client = openai((await issueKey(stack.db, other, "other")).secret);
    const before = [stack.mock.requests.length, mockB.requests.length];
    for (const id of [onA.id, onB.id, "file-neverMadeHere"]) {
      for (const call of [() => client.files.retrieve(id), () => client.files.content(id), () => client.files.delete(id)]) {
        const error = await call().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(OpenAI.NotFoundError);
        expect((error as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({
          message: `No such File object: ${id}`,
          type: "invalid_request_error",
        });
      }
    }
    const chat = await client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: [{ type: "file", file: { file_id: onA.id } }] }] })
      .catch((e: unknown) => e);
    expect(chat).toBeInstanceOf(OpenAI.NotFoundError);
    expect((chat as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({ param: "file_id" });
    expect([stack.mock.requests.length, mockB.requests.length]).toEqual(before);
  });

  it("hostile uploads: too large (declared or streamed), stalled, repeated fields, not multipart", async () => {
    const auth = { authorization: `Bearer ${stack.apiKey}` };
    const uploadsBefore = [...stack.mock.requests, ...mockB.requests].filter((r) => r.path === "/v1/files" && r.status === 200).length;
    // Declared larger than the limit: refused before a byte is read.
    const declared = await rawUpload({ ...auth, "content-length": String(UPLOAD_MAX + 1) }, Buffer.alloc(0), { endAfter: false });
    expect(declared.status).toBe(413);
    expect(declared.body).toContain(`the limit is ${UPLOAD_MAX} bytes`);
    // Streamed without a length past the limit: cut at the limit.
    const boundary = "hostileboundary";
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n\r\n`,
    );
    const streamed = await rawUpload({ ...auth, "content-type": `multipart/form-data; boundary=${boundary}`, "transfer-encoding": "chunked" }, head, {
      endAfter: false,
      more: UPLOAD_MAX + 1024 * 1024,
    });
    expect(streamed.status).toBe(413);
    // Stalled: nothing more after the head for longer than the body idle limit → 408.
    const t0 = Date.now();
    const stalled = await rawUpload({ ...auth, "content-type": `multipart/form-data; boundary=${boundary}`, "transfer-encoding": "chunked" }, head, {
      endAfter: false,
    });
    expect(stalled.status).toBe(408);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(BODY_IDLE_MS - 50);
    // A repeated purpose or file part: one upload is one file.
    for (const dup of ["purpose", "file"]) {
      const part = (name: string, value: string) =>
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${name === "file" ? '; filename="x.txt"' : ""}\r\n\r\n${value}\r\n`;
      const body = Buffer.from(part("purpose", "user_data") + part("file", "one") + part(dup, dup === "file" ? "two" : "batch") + `--${boundary}--\r\n`);
      const res = await rawUpload({ ...auth, "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": String(body.length) }, body, {
        endAfter: true,
      });
      expect(res.status).toBe(400);
      expect(res.body).toContain(`repeats the field \`${dup}\``);
    }
    const json = await fetch(`${stack.baseUrl}/v1/files`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: "{}" });
    expect(json.status).toBe(400);
    expect(await json.json()).toMatchObject({ error: { type: "invalid_request_error", message: expect.stringContaining("multipart/form-data") } });
    expect([...stack.mock.requests, ...mockB.requests].filter((r) => r.path === "/v1/files" && r.status === 200)).toHaveLength(uploadsBefore);
  }, 60_000);

  it("a deleted file is gone: the provider deletes it and the hub forgets its route", async () => {
    const client = openai(stack.apiKey);
    const made = await openai(keyA).files.create({ file: await toFile(Buffer.from("short-lived"), "s.txt"), purpose: "user_data" });
    expect(await client.files.delete(made.id)).toMatchObject({ id: made.id, deleted: true });
    // The route is forgotten here at once and in `file_routes` just after the answer (as a deleted response's). The
    // bound is generous: on a loaded CI machine the row's delete (retried with backoff) took over 15 s twice.
    await waitFor(async () => (await stack.db.fileRoute.count({ where: { fileId: made.id } })) === 0, 45_000);
    const calls = callsTo(stack.mock, `/v1/files/${made.id}`).length;
    const again = await client.files.retrieve(made.id).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(OpenAI.NotFoundError);
    expect(callsTo(stack.mock, `/v1/files/${made.id}`)).toHaveLength(calls);
  });

  it("Assistants/threads answer that the API was shut down; Anthropic's Files API answers in Anthropic's shape", async () => {
    for (const [method, path] of [
      ["POST", "/v1/threads"],
      ["GET", "/v1/assistants"],
      ["POST", "/v1/threads/thread_abc/runs"],
    ] as const) {
      const res = await fetch(`${stack.baseUrl}${path}`, { method, headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" } });
      expect(res.status).toBe(410);
      expect(await res.json()).toMatchObject({ error: { type: "invalid_request_error", code: "api_retired", message: expect.stringContaining("2026-08-26") } });
    }
    const anthropic = new Anthropic({ baseURL: stack.baseUrl, apiKey: stack.apiKey, maxRetries: 0 });
    const error = await anthropic.beta.files.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Anthropic.NotFoundError);
    expect((error as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ type: "error", error: { type: "not_found_error" } });
  });

  it("while the keeping agent is away, calls on its file get 503 with Retry-After (the other agent is never asked); once revoked, 404", async () => {
    await b.agent.stop();
    const client = openai(stack.apiKey);
    await waitFor(async () => ((await client.files.retrieve(onB.id).catch((e: unknown) => e)) as { status?: number }).status === 503, 10_000);
    const away = await fetch(`${stack.baseUrl}/v1/files/${onB.id}/content`, { headers: { authorization: `Bearer ${stack.apiKey}` } });
    expect(away.status).toBe(503);
    expect(Number(away.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(await away.json()).toMatchObject({ error: { type: "server_error", message: expect.stringContaining("not connected now") } });
    const chat = await client.chat.completions
      .create({ model: "gpt-4o-mini", messages: [{ role: "user", content: [{ type: "file", file: { file_id: onB.id } }] }] })
      .catch((e: unknown) => e);
    expect((chat as { status?: number }).status).toBe(503);
    expect(callsTo(stack.mock, `/v1/files/${onB.id}`)).toEqual([]);
    await stack.db.agent.update({ where: { id: b.agentId }, data: { status: "revoked" } });
    const gone = await client.files.retrieve(onB.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect((gone as Error).message).toContain("no longer serves");
  });
});

/**
 * A raw upload over one HTTP/1.1 connection: sends `head`, then `more` bytes of zeros in 256 KiB chunks (while
 * the server reads), and ends the body only with `endAfter`; resolves with the answer, whatever was sent.
 */
async function rawUpload(headers: Record<string, string>, head: Buffer, opts: { endAfter: boolean; more?: number }): Promise<{ status: number; body: string }> {
  const http = await import("node:http");
  const url = new URL(`${stack.baseUrl}/v1/files`);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname, method: "POST", headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        resolve({ status: res.statusCode ?? 0, body });
        req.destroy();
      });
    });
    req.on("error", (error) => (answered ? undefined : reject(error)));
    let answered = false;
    req.on("response", () => (answered = true));
    // The head goes now even with no body byte yet (Node holds it until the first write otherwise).
    req.flushHeaders();
    if (head.length > 0) req.write(head);
    let left = opts.more ?? 0;
    const chunk = Buffer.alloc(256 * 1024);
    const pump = () => {
      while (left > 0 && !answered) {
        left -= chunk.length;
        if (!req.write(chunk)) {
          req.once("drain", pump);
          return;
        }
      }
    };
    pump();
    if (opts.endAfter) req.end();
  });
}
