import { describe, expect, it } from "vitest";
import { anthropicBatchKind } from "./message_batch_kind.ts";
import type { DeferredAgent, DeferredRowView } from "./deferred_kinds.ts";

const enc = new TextEncoder();
const row: DeferredRowView = {
  requestId: "req_1",
  kind: "anthropic_batch",
  userId: "usr_1",
  agentId: "agt_1",
  model: "claude-haiku-4-5",
  objectId: "msgbatch_abc",
  worst: { inputTokens: 1_000, outputTokens: 1_000 },
  createdAt: new Date(),
};
const batch = (status: string) => ({ id: "msgbatch_abc", type: "message_batch", processing_status: status, results_url: null });

/** An agent whose results call answers `status` with `lines` in chunks of 7 bytes. */
function agent(status: number, lines: string): DeferredAgent {
  return {
    get: () => Promise.resolve({ error: "unused" }),
    stream: (call, onData) => {
      expect(call.path).toBe("/v1/messages/batches/msgbatch_abc/results");
      expect(call.headers).toContainEqual(["anthropic-version", "2023-06-01"]);
      const bytes = enc.encode(lines);
      for (let i = 0; i < bytes.length; i += 7) onData(bytes.subarray(i, i + 7));
      return Promise.resolve({ status });
    },
  };
}

describe("the anthropic_batch deferred kind", () => {
  it("polls the batch until it has ended; a batch gone is gone; anything else is no answer", () => {
    expect(anthropicBatchKind.poll(row)).toMatchObject({ path: "/v1/messages/batches/msgbatch_abc" });
    expect(anthropicBatchKind.parse(200, enc.encode(JSON.stringify(batch("in_progress"))))).toMatchObject({ kind: "running", status: "in_progress" });
    expect(anthropicBatchKind.parse(200, enc.encode(JSON.stringify(batch("canceling"))))).toMatchObject({ kind: "running" });
    expect(anthropicBatchKind.parse(200, enc.encode(JSON.stringify(batch("ended"))))).toMatchObject({ kind: "terminal", status: "ended", usage: null });
    expect(anthropicBatchKind.parse(404, enc.encode("{}"))).toEqual({ kind: "gone" });
    expect(anthropicBatchKind.parse(500, enc.encode("{}"))).toMatchObject({ kind: "no_answer" });
    expect(anthropicBatchKind.parse(200, enc.encode('{"type":"error"}'))).toMatchObject({ kind: "no_answer" });
  });

  it("reads the usage from the results streamed through the agent: succeeded messages only", async () => {
    const terminal = { kind: "terminal" as const, status: "ended", usage: null, object: batch("ended") };
    const lines = [
      { custom_id: "a", result: { type: "succeeded", message: { usage: { input_tokens: 5, output_tokens: 6, cache_read_input_tokens: 4 } } } },
      { custom_id: "b", result: { type: "errored", error: { type: "error", error: { type: "api_error", message: "x" } } } },
    ]
      .map((l) => JSON.stringify(l))
      .join("\n");
    expect(await anthropicBatchKind.usage!(row, terminal, agent(200, lines))).toEqual({ usage: { inputTokens: 9, outputTokens: 6, cachedInputTokens: 4 } });
    expect(await anthropicBatchKind.usage!(row, terminal, agent(404, ""))).toEqual({ usage: null });
    expect(await anthropicBatchKind.usage!(row, terminal, agent(503, ""))).toEqual({ noAnswer: "results status 503" });
  });
});
