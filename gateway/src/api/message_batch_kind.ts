/**
 * The deferred settlement of an Anthropic Message Batch (`deferred_settlements.kind = anthropic_batch`; money rules
 * in docs/billing.md, "Message Batches"): polled by `GET /v1/messages/batches/{id}` through the agent that created
 * it until its `processing_status` is `ended`; then its results file is streamed through the same agent and every
 * succeeded message's usage summed (`BatchResultsTally`, one line held at a time). The poller caps the sum at the
 * worst case held and charges it once, at batch prices. A batch gone at the provider (404), or results gone, settle
 * at nothing (the deferred rules: the owner's side lost them).
 */
import type pg from "pg";
import { BatchResultsTally } from "../billing/message_batch_results.ts";
import { hubBatchObject, MESSAGE_BATCH_OBJECT_BYTES_MAX } from "../routing/message_batches.ts";
import { jsonObject, type DeferredCall, type DeferredKindHandler } from "./deferred_kinds.ts";

/** The API version the hub's own calls on a batch name (Anthropic requires one on every call). */
export const ANTHROPIC_VERSION = "2023-06-01";
/**
 * A batch not settled this long after its creation is settled by the "expired" rule, ms: Anthropic ends every
 * batch within 24 h (unfinished requests expire); an hour more lets the last polls and the results read happen.
 */
export const MESSAGE_BATCH_SETTLE_AGE_MS_MAX = 25 * 3_600_000;

const headers: [string, string][] = [["anthropic-version", ANTHROPIC_VERSION]];

function call(path: string): DeferredCall {
  return { path, headers };
}

export const anthropicBatchKind: DeferredKindHandler = {
  api: "anthropic",
  pollBytesMax: MESSAGE_BATCH_OBJECT_BYTES_MAX,
  maxAgeMs: MESSAGE_BATCH_SETTLE_AGE_MS_MAX,
  poll: (row) => call(`/v1/messages/batches/${row.objectId}`),
  parse(status, body) {
    if (status === 404) return { kind: "gone" };
    if (status !== 200) return { kind: "no_answer", why: `status ${status}` };
    const obj = jsonObject(body);
    if (!obj || obj.type !== "message_batch") return { kind: "no_answer", why: "not a message batch" };
    const s = typeof obj.processing_status === "string" ? obj.processing_status : "";
    // Its usage is in its results, read by `usage` below.
    if (s === "ended") return { kind: "terminal", status: s, usage: null, object: obj };
    return { kind: "running", status: s || "unknown", object: obj };
  },
  // What ran is charged whether the batch ended by itself or was cancelled part way.
  endCause: () => "completed",
  snapshot: (object) => hubBatchObject(object),
  async usage(row, _terminal, agent) {
    const tally = new BatchResultsTally();
    const r = await agent.stream(call(`/v1/messages/batches/${row.objectId}/results`), (chunk) => tally.push(chunk));
    if ("error" in r) return { noAnswer: r.error };
    // The results are gone (deleted at the provider, or past its retention): nothing can be charged.
    if (r.status === 404) return { usage: null };
    if (r.status !== 200) return { noAnswer: `results status ${r.status}` };
    tally.end();
    return { usage: tally.usage };
  },
  async onSettled(c: pg.PoolClient, row, terminal) {
    const object = terminal ? hubBatchObject(terminal.object) : null;
    if (object) await c.query("UPDATE message_batch_routes SET object = $2, updated_at = now() WHERE batch_id = $1", [row.objectId, JSON.stringify(object)]);
  },
};
