/**
 * A Message Batch's worst case for its hold (docs/billing.md, "Message Batches"): the batch body is read as it
 * streams through (`MessageBatchScanner`, protocol), and each request adds its own true upper bound — input ≤ its
 * `params` bytes (plus an allowance per inline image, or the model's whole context window when it points at
 * content the hub cannot see) and output ≤ its `max_tokens` — to the batch's sum.
 */
import { MessageBatchScanner } from "@wellspring/protocol";
import type { Usage } from "./usage.ts";
import { worstUsage, type ModelLimits } from "./worst_case.ts";

/** The batch body's scanner, summing the worst case of every request it has read. */
export class MessageBatchWorstCase {
  readonly scanner: MessageBatchScanner;
  readonly worst = { inputTokens: 0, outputTokens: 0 };

  constructor(
    /** The model's limits (context window, output maximum) its requests are bounded by. */
    limitsOf: (model: string) => ModelLimits,
  ) {
    this.scanner = new MessageBatchScanner((fields, paramsBytes) => {
      const w = worstUsage("tokens", false, fields, paramsBytes, limitsOf(fields.model!));
      this.worst.inputTokens += w.inputTokens;
      this.worst.outputTokens += w.outputTokens;
    });
  }

  /** The requests read so far, as one usage. */
  usage(): Usage {
    return { inputTokens: this.worst.inputTokens, outputTokens: this.worst.outputTokens, cachedInputTokens: 0 };
  }
}
