/** The mock's background responses on an injected clock: queued → in_progress → their end, cancel, and the usage at each. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./mod.ts";

let mock: MockProvider;
let clock = 1_000_000;
beforeAll(async () => {
  mock = await startMockProvider({ now: () => clock });
});
afterAll(async () => {
  await mock.close();
});

type Resp = { id: string; status: string; usage: { input_tokens: number; output_tokens: number } | null; output: unknown[]; background?: boolean };
const call = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${mock.origin}${path}`, {
    method,
    headers: { "content-type": "application/json", authorization: "Bearer sk-x" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Resp };
};
const create = (directives: string) =>
  call("POST", "/v1/responses", { model: "gpt-4o-mini", input: `go [mock ${directives}]`, background: true }).then((r) => r.body);

it("answers the create call at once (queued, no usage), then runs on its clock to completed with usage", async () => {
  const made = await create("bg_queue_ms=100 bg_run_ms=1000 output_tokens=40 input_tokens=12");
  expect(made).toMatchObject({ status: "queued", usage: null, output: [], background: true });
  const at = async (ms: number) => {
    clock += ms;
    return (await call("GET", `/v1/responses/${made.id}`)).body;
  };
  expect(await at(50)).toMatchObject({ status: "queued", usage: null });
  expect(await at(100)).toMatchObject({ status: "in_progress", usage: null });
  const done = await at(1_000);
  expect(done).toMatchObject({ status: "completed", usage: { input_tokens: 12, output_tokens: 40 } });
  expect(done.output).toHaveLength(1);
  // A finished response cannot be cancelled: the cancel returns it as it is.
  expect((await call("POST", `/v1/responses/${made.id}/cancel`)).body).toMatchObject({ status: "completed" });
});

it("a cancel mid-run ends it cancelled, with the input and the output made so far", async () => {
  const made = await create("bg_run_ms=1000 output_tokens=100 input_tokens=7");
  clock += 250;
  const cancelled = (await call("POST", `/v1/responses/${made.id}/cancel`)).body;
  expect(cancelled).toMatchObject({ status: "cancelled", usage: { input_tokens: 7, output_tokens: 25 } });
  clock += 5_000;
  expect((await call("GET", `/v1/responses/${made.id}`)).body).toMatchObject({ status: "cancelled", usage: { output_tokens: 25 } });
});

it("ends failed or incomplete when told to", async () => {
  const failed = await create("bg_run_ms=10 bg_end=failed input_tokens=5");
  const incomplete = await create("bg_run_ms=10 bg_end=incomplete output_tokens=9 input_tokens=5");
  clock += 20;
  expect((await call("GET", `/v1/responses/${failed.id}`)).body).toMatchObject({ status: "failed", usage: { input_tokens: 5, output_tokens: 0 } });
  expect((await call("GET", `/v1/responses/${incomplete.id}`)).body).toMatchObject({ status: "incomplete", usage: { output_tokens: 9 } });
});
