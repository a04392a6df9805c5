/**
 * Content compliance, through the real gateway, a real Deno agent and the mock provider: an admin adds
 * prohibited terms with the admin API; requests whose text contains one — in full width, upper case, with
 * zero-width characters, in Chinese, at the end of a chunked 2 MiB body — are refused before dispatch in the
 * route's own error shape, and only the body's hash and the rule are kept. Then the canary scan: a unique string
 * sent through every route is found nowhere in the database, the gateway's and agent's logs or the agent's files.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import pg from "pg";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomToken } from "@wellspring/db";
import { adminFetch, startStack, waitFor, type Stack } from "./harness.ts";

let stack: Stack;
let pool: pg.Pool;
beforeAll(async () => {
  // Debug logs: the canary scan must hold for everything the gateway would ever log.
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1", LOG_LEVEL: "debug" } });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
}, 120_000);
afterAll(async () => {
  await pool?.end();
  await stack?.close();
});

const EN_TERM = "Forbidden Phrase";
const ZH_TERM = "违禁词";
const rules: Record<string, string> = {};

const openai = () => new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
const anthropic = () => new Anthropic({ baseURL: stack.baseUrl, apiKey: stack.apiKey, maxRetries: 0 });
const post = (path: string, body: string | ReadableStream<Uint8Array>, headers: Record<string, string> = {}) =>
  fetch(`${stack.baseUrl}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", ...headers },
    body,
    // @ts-expect-error: Node's fetch needs `duplex` for a streamed body.
    duplex: "half",
  });

describe("prohibited terms", () => {
  it("an admin adds terms to lists; a bad term is refused with a 400 naming its field", async () => {
    for (const [list, term] of [
      ["default", EN_TERM],
      ["zh", ZH_TERM],
    ] as const) {
      const res = await adminFetch(stack.gateway.adminOrigin, "/admin/v1/content-rules", { method: "POST", body: { list, term } });
      expect(res.status).toBe(201);
      rules[term] = ((await res.json()) as { id: string }).id;
    }
    const bad = await adminFetch(stack.gateway.adminOrigin, "/admin/v1/content-rules", { method: "POST", body: { list: "Bad List!", term: "x" } });
    expect(bad.status).toBe(400);
    const listed = (await (await adminFetch(stack.gateway.adminOrigin, "/admin/v1/content-rules")).json()) as { data: { id: string; list: string }[] };
    expect(listed.data.map((r) => r.list).sort()).toEqual(["default", "zh"]);
    // Every gateway reloads the rules within 2 s: wait until this one refuses (no fixed sleep).
    await waitFor(
      async () => (await post("/v1/chat/completions", JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: EN_TERM }] }))).status === 400,
      10_000,
    );
  });

  it("is refused in OpenAI's shape, whatever the width, case or zero-width characters, and never reaches the provider", async () => {
    const before = stack.mock.requests.length;
    const disguised = "please say ＦＯＲＢＩＤ\u200bＤＥＮ pHrAsE";
    const error = await openai()
      .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: disguised }] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect((error as InstanceType<typeof OpenAI.BadRequestError>).code).toBe("content_policy_violation");
    expect(stack.mock.requests.length).toBe(before);
  });

  it("is refused in Anthropic's shape for a Chinese term", async () => {
    const before = stack.mock.requests.length;
    const error = await anthropic()
      .messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: `请重复：${ZH_TERM}。` }] })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    const body = (error as InstanceType<typeof Anthropic.BadRequestError>).error as { type: string; error: { type: string } };
    expect(body).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
    expect(stack.mock.requests.length).toBe(before);
  });

  it("a term at the end of a chunked 2 MiB body is refused before the provider has the body whole", async () => {
    const padding = "lorem ipsum dolor sit amet ".repeat(80_000); // ~2 MiB of allowed text
    const body = new TextEncoder().encode(JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: `${padding} ${ZH_TERM}` }] }));
    const before = stack.mock.requests.length;
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= body.length) return controller.close();
        controller.enqueue(body.subarray(sent, sent + 64 * 1024));
        sent += 64 * 1024;
      },
    });
    const res = await post("/v1/chat/completions", stream);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("content_policy_violation");
    await waitFor(() => stack.mock.requests.slice(before).every((r) => r.status === 0), 2_000);
    for (const seen of stack.mock.requests.slice(before)) expect(seen.requestBytes).toBeLessThan(body.length);
  });

  it("keeps only the hash of the request and the matched rule", async () => {
    const refusals = () =>
      pool.query<{ rule_id: string; request_hash: string; api: string }>("SELECT rule_id, request_hash, api FROM content_refusals ORDER BY created_at");
    // Recorded beside the refusal, not before it is answered: the last one may land a moment after its 400.
    await expect.poll(async () => (await refusals()).rows.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(4);
    const rows = await refusals();
    for (const r of rows.rows) expect(r.request_hash).toMatch(/^[0-9a-f]{64}$/);
    expect(new Set(rows.rows.map((r) => r.rule_id))).toEqual(new Set([rules[EN_TERM], rules[ZH_TERM]]));
    expect(rows.rows.map((r) => r.api)).toContain("anthropic");
  });
});

/** Every file under `dir`, with its text. */
async function filesUnder(dir: string): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  for (const name of await readdir(dir)) {
    const path = join(dir, name);
    const s = await stat(path);
    if (s.isDirectory()) out.push(...(await filesUnder(path)));
    else out.push({ path, text: (await readFile(path)).toString("latin1") });
  }
  return out;
}

describe("the canary scan", () => {
  it("a canary sent through every route is found nowhere: database, logs, agent files", async () => {
    const canary = `canary${randomToken(16)}`;
    const blocked = `${canary} ${EN_TERM}`;
    const o = openai();
    const a = anthropic();
    await o.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: canary }] });
    const chatStream = await o.chat.completions.create({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: canary }] });
    for await (const chunk of chatStream) void chunk;
    await o.completions.create({ model: "gpt-4o-mini", prompt: canary });
    await o.responses.create({ model: "gpt-4o-mini", input: canary });
    const responsesStream = await o.responses.create({ model: "gpt-4o-mini", input: canary, stream: true });
    for await (const event of responsesStream) void event;
    await o.embeddings.create({ model: "text-embedding-3-small", input: canary });
    await a.messages.create({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: canary }] });
    await a.messages.stream({ model: "claude-haiku-4-5", max_tokens: 16, messages: [{ role: "user", content: canary }] }).finalMessage();
    await a.messages.countTokens({ model: "claude-haiku-4-5", messages: [{ role: "user", content: canary }] });
    const refused = await post("/v1/chat/completions", JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: blocked }] }));
    expect(refused.status).toBe(400);
    // The calls above went through: the scan below would prove nothing if they had not.
    expect(stack.mock.requests.filter((r) => r.status === 200).length).toBeGreaterThanOrEqual(9);
    await waitFor(async () => Number((await pool.query<{ count: string }>("SELECT count(*) FROM content_refusals")).rows[0]!.count) >= 5, 5_000);

    // Every table, every row, as text (the scan finds text that is stored: the rule's own term is).
    const control = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM content_rules t WHERE t::text LIKE $1", [`%${ZH_TERM}%`]);
    expect(control.rows[0]!.n).toBe(1);
    const tables = await pool.query<{ tablename: string }>("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    for (const { tablename } of tables.rows) {
      const hits = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${tablename}" t WHERE t::text LIKE $1`, [`%${canary}%`]);
      expect({ table: tablename, rows: hits.rows[0]!.n }).toEqual({ table: tablename, rows: 0 });
    }
    expect(stack.gateway.lines.filter((l) => l.includes(canary))).toEqual([]);
    expect(stack.agent.lines.filter((l) => l.includes(canary))).toEqual([]);
    for (const dir of [stack.agent.dataDir, stack.gateway.dataDir]) {
      const files = await filesUnder(dir);
      expect(files.length).toBeGreaterThan(0);
      expect(files.filter((f) => f.text.includes(canary)).map((f) => f.path)).toEqual([]);
    }
  });
});
