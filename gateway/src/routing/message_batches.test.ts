import { describe, expect, it } from "vitest";
import { hubBatchObject, MESSAGE_BATCH_LIST_LIMIT_MAX, messageBatchListQuery, parseBatchObject } from "./message_batches.ts";

describe("message batch objects and list queries", () => {
  it("hands a batch object out with the hub's results path and only the batch's own fields", () => {
    const id = "msgbatch_abc";
    const provider = {
      id,
      type: "message_batch",
      processing_status: "ended",
      request_counts: { processing: 0, succeeded: 2, errored: 1, canceled: 0, expired: 0 },
      ended_at: "2026-12-02T10:00:00Z",
      created_at: "2026-12-02T09:00:00Z",
      expires_at: "2026-12-03T09:00:00Z",
      archived_at: null,
      cancel_initiated_at: null,
      results_url: `https://api.anthropic.com/v1/messages/batches/${id}/results`,
      extra: "dropped",
    };
    const mine = hubBatchObject(provider)!;
    expect(mine.results_url).toBe(`/v1/messages/batches/${id}/results`);
    expect(mine).not.toHaveProperty("extra");
    expect(hubBatchObject({ ...provider, results_url: null })!.results_url).toBeNull();
    expect(parseBatchObject(new TextEncoder().encode(JSON.stringify(provider)))).toEqual(mine);
    expect(parseBatchObject(new TextEncoder().encode('{"type":"error"}'))).toBeNull();
    expect(parseBatchObject(new TextEncoder().encode("not json"))).toBeNull();
  });

  it("reads Anthropic's list parameters within their limits", () => {
    expect(messageBatchListQuery(new URLSearchParams())).toEqual({ limit: 20, beforeId: null, afterId: null });
    expect(messageBatchListQuery(new URLSearchParams("limit=5&after_id=msgbatch_x"))).toEqual({ limit: 5, beforeId: null, afterId: "msgbatch_x" });
    expect(messageBatchListQuery(new URLSearchParams(`limit=${MESSAGE_BATCH_LIST_LIMIT_MAX + 1}`))).toHaveProperty("problem");
    expect(messageBatchListQuery(new URLSearchParams("limit=0"))).toHaveProperty("problem");
    expect(messageBatchListQuery(new URLSearchParams("before_id=../x"))).toHaveProperty("problem");
    expect(messageBatchListQuery(new URLSearchParams("before_id=msgbatch_a&after_id=msgbatch_b"))).toHaveProperty("problem");
  });
});
