/** The deferred settlement kinds every gateway polls, by `deferred_settlements.kind` (`deferred_kinds.ts`). */
import { responseKind, type DeferredKinds } from "./deferred_kinds.ts";
import { openaiBatchKind } from "./openai_batches.ts";
import { anthropicBatchKind } from "./message_batch_kind.ts";

export const DEFERRED_KINDS: DeferredKinds = { response: responseKind, openai_batch: openaiBatchKind, anthropic_batch: anthropicBatchKind };
