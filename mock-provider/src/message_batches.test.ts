/** The mock's Message Batches on an injected clock: in_progress → ended, results with usage, cancel, list, delete. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./mod.ts";
import { CANCEL_MS } from "./message_batches.ts";

let mock: MockProvider;
let clock = 5_000_000;
beforeAll(async () => {
  mock = await startMockProvider({ now: () => clock });
});
afterAll(async () => {
  await mock.close();
});

type Batch = {
  id: string;
  type: string;
  processing_status: string;
  request_counts: Record<string, number>;
  results_url: string | null;
  ended_at: string | null;
};
const call = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${mock.origin}${path}`, {
    method,
    headers: { "content-type": "application/json", "x-api-key": "sk-ant-x", "anthropic-version": "2023-06-01" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") };
};
const req = (id: string, text: string) => ({
  custom_id: id,
  params: { model: "claude-haiku-4-5", max_tokens: 100, messages: [{ role: "user", content: text }] },
});

it("runs a batch on its clock to ended, with results carrying each message's usage", async () => {
  const made = await call("POST", "/v1/messages/batches", {
    requests: [
      req("a", "[mock bg_run_ms=1000 input_tokens=10 output_tokens=4]"),
      req("b", "[mock status=400]"),
      req("c", "[mock input_tokens=3 output_tokens=2 cache_read=50]"),
    ],
  });
  expect(made.status).toBe(200);
  const batch = JSON.parse(made.text) as Batch;
  expect(batch).toMatchObject({ type: "message_batch", processing_status: "in_progress", results_url: null, request_counts: { processing: 3 } });
  expect((await call("GET", `/v1/messages/batches/${batch.id}/results`)).status).toBe(400);
  clock += 400;
  expect(JSON.parse((await call("GET", `/v1/messages/batches/${batch.id}`)).text)).toMatchObject({ request_counts: { processing: 2, succeeded: 1 } });
  clock += 700;
  const ended = JSON.parse((await call("GET", `/v1/messages/batches/${batch.id}`)).text) as Batch;
  expect(ended).toMatchObject({ processing_status: "ended", request_counts: { processing: 0, succeeded: 2, errored: 1 } });
  expect(ended.results_url).toBe(`${mock.origin}/v1/messages/batches/${batch.id}/results`);
  const results = await call("GET", `/v1/messages/batches/${batch.id}/results`);
  expect(results.type).toBe("application/binary");
  // The same bytes on every read (as a provider's stored results file).
  expect((await call("GET", `/v1/messages/batches/${batch.id}/results`)).text).toBe(results.text);
  const lines = results.text
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { custom_id: string; result: { type: string; message?: { usage: Record<string, number> } } });
  expect(lines.map((l) => [l.custom_id, l.result.type])).toEqual([
    ["a", "succeeded"],
    ["b", "errored"],
    ["c", "succeeded"],
  ]);
  expect(lines[0]!.result.message!.usage).toMatchObject({ input_tokens: 10, output_tokens: 4 });
  expect(lines[2]!.result.message!.usage).toMatchObject({ input_tokens: 3, output_tokens: 2, cache_read_input_tokens: 50 });
  const deleted = await call("DELETE", `/v1/messages/batches/${batch.id}`);
  expect(JSON.parse(deleted.text)).toEqual({ id: batch.id, type: "message_batch_deleted" });
  expect((await call("GET", `/v1/messages/batches/${batch.id}`)).status).toBe(404);
});

it("cancels: unfinished requests are canceled, canceling then ended; an unended batch cannot be deleted; lists newest first", async () => {
  const made = JSON.parse((await call("POST", "/v1/messages/batches", { requests: [req("x", "[mock bg_run_ms=1000]"), req("y", "y")] })).text) as Batch;
  clock += 600;
  expect((await call("DELETE", `/v1/messages/batches/${made.id}`)).status).toBe(400);
  const cancelling = JSON.parse((await call("POST", `/v1/messages/batches/${made.id}/cancel`)).text) as Batch;
  expect(cancelling.processing_status).toBe("canceling");
  clock += CANCEL_MS;
  const ended = JSON.parse((await call("GET", `/v1/messages/batches/${made.id}`)).text) as Batch;
  expect(ended).toMatchObject({ processing_status: "ended", request_counts: { succeeded: 1, canceled: 1, processing: 0 } });
  const second = JSON.parse((await call("POST", "/v1/messages/batches", { requests: [req("z", "z")] })).text) as Batch;
  const page = JSON.parse((await call("GET", "/v1/messages/batches?limit=1")).text) as { data: Batch[]; has_more: boolean; first_id: string };
  expect(page).toMatchObject({ has_more: true, first_id: second.id });
  const next = JSON.parse((await call("GET", `/v1/messages/batches?limit=1&after_id=${second.id}`)).text) as { data: Batch[] };
  expect(next.data[0]!.id).toBe(made.id);
});

it("refuses what Anthropic refuses: duplicated custom_id, missing max_tokens", async () => {
  expect((await call("POST", "/v1/messages/batches", { requests: [req("a", "1"), req("a", "2")] })).status).toBe(400);
  const noMax = await call("POST", "/v1/messages/batches", { requests: [{ custom_id: "a", params: { model: "m", messages: [] } }] });
  expect(JSON.parse(noMax.text)).toMatchObject({ type: "error", error: { type: "invalid_request_error" } });
});
