/**
 * OpenAI batches through the real gateway, Deno agent and mock provider, with the official `openai` client: the
 * batch input file is read as it uploads (its worst case at batch prices); the create call is pinned to the agent
 * keeping the file and holds that worst case; the gateway polls the batch through that agent until it ends and
 * settles once at batch prices (the user charged the batch's usage at half the table, the owner paid official ×
 * tier of that); the output file is downloadable byte-exact. A cancel mid-run is charged what ran; another
 * user's ids are 404; a file the hub cannot bound is refused at create (400); a balance short of the hold, 429.
 */
import pg from "pg";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_PRICE_TABLE } from "@wellspring/db";
import { Ledger, ownerAccount } from "../../gateway/src/billing/ledger.ts";
import { BATCH_PRICE_BPS, officialCostMicros, ownerEarningMicros, scaledPrice, TIER_BPS } from "../../gateway/src/billing/prices.ts";
import { fundedUser as fundedUserKey, startPricedStack, waitFor, type Stack } from "./harness.ts";

const GATEWAY_ENV = { BILLING_ENABLED: "1", BILLING_DEFERRED_FIRST_POLL_MS: "200", BILLING_DEFERRED_POLL_MAX_MS: "400" };
const OWNER_KEY = "Bearer sk-test-owner-openai-key-123";

let stack: Stack;
let pool: pg.Pool;
let ledger: Ledger;
let closeStack: (() => Promise<void>) | undefined;
beforeAll(async () => {
  ({ stack, pool, ledger, close: closeStack } = await startPricedStack({ gatewayEnv: GATEWAY_ENV }));
}, 120_000);
afterAll(async () => {
  await closeStack?.();
});

const batchPrice = scaledPrice(
  DEFAULT_PRICE_TABLE.find((p) => p.model === "gpt-4o-mini")!,
  BATCH_PRICE_BPS,
);

async function fundedUser(micros: bigint) {
  const { userId, secret } = await fundedUserKey(stack, ledger, micros, "batches");
  return { userId, client: new OpenAI({ baseURL: `${stack.baseUrl}/v1`, apiKey: secret, maxRetries: 0 }) };
}

/** One request line; `pad` characters of content make its body long enough to bound the input the mock reports. */
const line = (id: string, text: string, maxTokens = 100, model = "gpt-4o-mini", pad = 0) =>
  JSON.stringify({
    custom_id: id,
    method: "POST",
    url: "/v1/chat/completions",
    body: { model, messages: [{ role: "user", content: `${text}${"x".repeat(pad)}` }], max_tokens: maxTokens },
  });

async function upload(client: OpenAI, lines: string[]) {
  return client.files.create({ file: await toFile(Buffer.from(`${lines.join("\n")}\n`), "in.jsonl"), purpose: "batch" });
}

interface Row {
  request_id: string;
  state: string;
  settled_by: string | null;
  held_micros: string;
  price_bps: number;
}
const row = async (batchId: string) =>
  (
    await pool.query<Row>(
      "SELECT request_id, state::text, settled_by, held_micros::text, price_bps FROM deferred_settlements WHERE kind = 'openai_batch' AND object_id = $1",
      [batchId],
    )
  ).rows[0];

const reservation = async (requestId: string) =>
  (
    await pool.query<{
      status: string;
      charge_micros: string | null;
      earning_micros: string | null;
      input_tokens: number;
      output_tokens: number;
      end_cause: string;
    }>("SELECT status::text, charge_micros::text, earning_micros::text, input_tokens, output_tokens, end_cause::text FROM reservations WHERE request_id = $1", [
      requestId,
    ])
  ).rows[0];

const journal = async (account: string, requestId: string) =>
  BigInt(
    (
      await pool.query<{ s: string | null }>("SELECT SUM(amount_micros)::text AS s FROM journal_entries WHERE account = $1 AND request_id = $2", [
        account,
        requestId,
      ])
    ).rows[0]!.s ?? "0",
  );

async function settled(batchId: string): Promise<Row> {
  await waitFor(async () => (await row(batchId))?.state === "settled", 30_000);
  return (await row(batchId))!;
}

describe("OpenAI batches", () => {
  it("run at the file's agent, held at batch prices, settled once with the batch's usage at batch prices; the output file downloads byte-exact", async () => {
    const { userId, client } = await fundedUser(50_000_000n);
    const file = await upload(client, [
      line("a", "[mock bg_queue_ms=300 bg_run_ms=1500 input_tokens=1000 output_tokens=30]", 100, "gpt-4o-mini", 1_000),
      line("b", "[mock input_tokens=2000 output_tokens=50]", 100, "gpt-4o-mini", 2_000),
    ]);
    const batch = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/chat/completions",
      completion_window: "24h",
      metadata: { job: "nightly" },
    });
    expect(batch).toMatchObject({ object: "batch", status: "validating", input_file_id: file.id, metadata: { job: "nightly" } });
    // Written as the create call ends (just after its answer).
    await waitFor(async () => (await row(batch.id)) !== undefined);
    const pending = await row(batch.id);
    expect(pending).toMatchObject({ state: "pending", price_bps: Number(BATCH_PRICE_BPS) });
    // The hold is the file's worst case (each line's body bytes of input, its max_tokens of output) at batch prices.
    expect(BigInt(pending!.held_micros)).toBeGreaterThan(0n);
    expect(await reservation(pending!.request_id)).toMatchObject({ status: "held", charge_micros: null });

    // The user's own retrieves reach the agent keeping the batch; the list is the hub's own.
    await waitFor(async () => (await client.batches.retrieve(batch.id)).status === "completed", 20_000);
    const done = await settled(batch.id);
    expect(done.settled_by).toBe("completed");
    const charge = officialCostMicros({ inputTokens: 3000, outputTokens: 80, cachedInputTokens: 0 }, batchPrice);
    expect(await reservation(done.request_id)).toMatchObject({
      status: "settled",
      charge_micros: charge.toString(),
      earning_micros: ownerEarningMicros(charge, TIER_BPS.A).toString(),
      input_tokens: 3000,
      output_tokens: 80,
      end_cause: "completed",
    });
    expect(await journal(`user:${userId}`, done.request_id)).toBe(-charge);
    expect(await journal(ownerAccount(stack.ownerId), done.request_id)).toBe(ownerEarningMicros(charge, TIER_BPS.A));

    // The output file is the provider's, byte for byte, reached through the agent that keeps it.
    const final = await client.batches.retrieve(batch.id);
    expect(final.output_file_id).toBeTruthy();
    const viaHub = Buffer.from(await (await client.files.content(final.output_file_id!)).arrayBuffer());
    const atProvider = Buffer.from(
      await (await fetch(`${stack.mock.origin}/v1/files/${final.output_file_id}/content`, { headers: { authorization: OWNER_KEY } })).arrayBuffer(),
    );
    expect(viaHub.equals(atProvider)).toBe(true);
    expect(viaHub.toString("utf8").trim().split("\n")).toHaveLength(2);

    const listed = [];
    for await (const b of client.batches.list({ limit: 1 })) listed.push(b);
    expect(listed.map((b) => b.id)).toEqual([batch.id]);
    expect(listed[0]).toMatchObject({ status: "completed", request_counts: { total: 2, completed: 2, failed: 0 } });

    // Settled once: the books balance, nothing held.
    expect((await pool.query("SELECT 1 FROM journal_entries WHERE request_id = $1 AND kind = 'usage'", [done.request_id])).rowCount).toBe(1);
    await waitFor(
      async () => (await pool.query<{ r: string }>("SELECT reserved_micros::text AS r FROM wallets WHERE user_id = $1", [userId])).rows[0]!.r === "0",
    );
    expect((await ledger.audit()).problems).toEqual([]);
  }, 90_000);

  it("a cancel mid-run is charged what ran; another user's ids are 404", async () => {
    const { client } = await fundedUser(50_000_000n);
    const other = await fundedUser(50_000_000n);
    const lines = Array.from({ length: 4 }, (_, i) =>
      line(`r${i}`, i === 0 ? "[mock bg_run_ms=20000 input_tokens=100 output_tokens=10]" : "[mock input_tokens=100 output_tokens=10]"),
    );
    const file = await upload(client, lines);
    const batch = await client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" });
    await expect(other.client.batches.retrieve(batch.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.client.batches.cancel(batch.id)).rejects.toMatchObject({ status: 404 });
    await expect(other.client.batches.create({ input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).rejects.toMatchObject({
      status: 404,
    });
    const listed = [];
    for await (const b of other.client.batches.list()) listed.push(b);
    expect(listed).toEqual([]);
    await new Promise((r) => setTimeout(r, 6_000)); // a lines' worth runs (one per 5 s)
    expect((await client.batches.cancel(batch.id)).status).toBe("cancelling");
    const done = await settled(batch.id);
    expect(done.settled_by).toBe("cancelled");
    const at = (await (await fetch(`${stack.mock.origin}/v1/batches/${batch.id}`, { headers: { authorization: OWNER_KEY } })).json()) as {
      usage: { input_tokens: number; output_tokens: number };
    };
    expect(at.usage.input_tokens).toBeGreaterThan(0);
    expect(at.usage.input_tokens).toBeLessThan(400);
    const charge = officialCostMicros({ inputTokens: at.usage.input_tokens, outputTokens: at.usage.output_tokens, cachedInputTokens: 0 }, batchPrice);
    expect(await reservation(done.request_id)).toMatchObject({ charge_micros: charge.toString(), end_cause: "client_cancelled" });
  }, 90_000);

  it("refuses, before the provider sees it, a batch of a file the hub cannot bound (400) and one the balance does not cover (429)", async () => {
    const { client } = await fundedUser(50_000_000n);
    const before = stack.mock.requests.filter((r) => r.path === "/v1/batches").length;
    const mixed = await upload(client, [line("a", "x"), line("b", "y", 10, "gpt-4o")]);
    await expect(client.batches.create({ input_file_id: mixed.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).rejects.toMatchObject({
      status: 400,
      error: { message: expect.stringMatching(/cannot be run as a batch through this gateway: line 2 names the model gpt-4o/) },
    });
    const bad = await client.files.create({ file: await toFile(Buffer.from('{"custom_id":"a",\n'), "bad.jsonl"), purpose: "batch" });
    await expect(client.batches.create({ input_file_id: bad.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).rejects.toMatchObject({
      status: 400,
      error: { message: expect.stringMatching(/line 1 is not JSON/) },
    });
    const good = await upload(client, [line("a", "x")]);
    await expect(client.batches.create({ input_file_id: good.id, endpoint: "/v1/embeddings", completion_window: "24h" })).rejects.toMatchObject({
      status: 400,
    });
    const poor = await fundedUser(1n);
    const poorFile = await upload(poor.client, [line("a", "x", 100_000)]);
    await expect(poor.client.batches.create({ input_file_id: poorFile.id, endpoint: "/v1/chat/completions", completion_window: "24h" })).rejects.toMatchObject({
      status: 429,
      error: { code: "insufficient_quota" },
    });
    expect(stack.mock.requests.filter((r) => r.path === "/v1/batches").length).toBe(before);
  }, 60_000);
});
