/**
 * The mock's Batch API, driven by the official `openai` client on a hand-moved clock: a batch created from an
 * uploaded file is `validating`, then `in_progress` running its lines, then `completed` with the usage of the
 * lines it ran and an output and an error file; a cancel ends it `cancelled` with the lines run by then.
 */
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./mod.ts";

let mock: MockProvider;
let clock = 1_800_000_000_000;
beforeAll(async () => {
  mock = await startMockProvider({ now: () => clock });
});
afterAll(async () => {
  await mock?.close();
});

const client = () => new OpenAI({ baseURL: `${mock.origin}/v1`, apiKey: "sk-x", maxRetries: 0 });
const line = (id: string, text: string) =>
  JSON.stringify({ custom_id: id, method: "POST", url: "/v1/chat/completions", body: { model: "gpt-4o-mini", messages: [{ role: "user", content: text }] } });

async function upload(lines: string[]): Promise<string> {
  return (await client().files.create({ file: await toFile(Buffer.from(lines.join("\n")), "in.jsonl"), purpose: "batch" })).id;
}

it("runs a batch on its clock: usage of the lines it ran, an output file and an error file", async () => {
  const file = await upload([
    line("a", "[mock bg_queue_ms=1000 bg_run_ms=4000 input_tokens=10 output_tokens=3]"),
    line("b", "[mock input_tokens=20 output_tokens=4]"),
    line("c", "[mock status=500]"),
  ]);
  const created = await client().batches.create({ input_file_id: file, endpoint: "/v1/chat/completions", completion_window: "24h", metadata: { k: "v" } });
  expect(created).toMatchObject({
    object: "batch",
    status: "validating",
    input_file_id: file,
    request_counts: { total: 3, completed: 0, failed: 0 },
    metadata: { k: "v" },
  });
  clock += 1_000;
  expect((await client().batches.retrieve(created.id)).status).toBe("in_progress");
  clock += 4_000;
  const done = await client().batches.retrieve(created.id);
  expect(done).toMatchObject({
    status: "completed",
    request_counts: { total: 3, completed: 2, failed: 1 },
    usage: { input_tokens: 30, output_tokens: 7, total_tokens: 37, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
  });
  const out = (await (await client().files.content(done.output_file_id!)).text()).trim().split("\n");
  expect(out.map((l) => (JSON.parse(l) as { custom_id: string }).custom_id)).toEqual(["a", "b"]);
  const err = (await (await client().files.content(done.error_file_id!)).text()).trim().split("\n");
  expect(err.map((l) => (JSON.parse(l) as { response: { status_code: number } }).response.status_code)).toEqual([500]);
  // The same object on every later read.
  expect(await client().batches.retrieve(created.id)).toEqual(done);
});

it("cancels a running batch with the lines run by then, and knows no other ids", async () => {
  const file = await upload(
    ["[mock bg_run_ms=4000 input_tokens=5 output_tokens=1]", "", "", ""].map((t, i) => line(`r${i}`, t || "[mock input_tokens=5 output_tokens=1]")),
  );
  const created = await client().batches.create({ input_file_id: file, endpoint: "/v1/chat/completions", completion_window: "24h" });
  clock += 2_000;
  expect(await client().batches.cancel(created.id)).toMatchObject({ status: "cancelling" });
  clock += 10_000;
  expect(await client().batches.retrieve(created.id)).toMatchObject({
    status: "cancelled",
    request_counts: { completed: 2 },
    usage: { input_tokens: 10, output_tokens: 2 },
  });
  await expect(client().batches.cancel(created.id)).rejects.toMatchObject({ status: 409 });
  await expect(client().batches.retrieve("batch_nope")).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  const userFile = (await client().files.create({ file: await toFile(Buffer.from(line("x", "y")), "x.jsonl"), purpose: "user_data" })).id;
  await expect(client().batches.create({ input_file_id: userFile, endpoint: "/v1/chat/completions", completion_window: "24h" })).rejects.toMatchObject({
    status: 400,
  });
});
