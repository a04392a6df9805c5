/**
 * What a request is charged for, by how it ended. The rules (docs/billing.md):
 *
 * 1. The provider reported the final usage → that usage, exactly (the meter then caps it to the hub's own count
 *    beyond the model family's tolerance: `usage_check.ts`).
 * 2. The provider answered with an error status, or never answered (timeout, agent lost, refused, gateway
 *    error) → nothing: providers do not bill failed calls and the user received nothing.
 * 3. The client left before any response byte, after its request reached the provider → the input only
 *    (estimated): the provider has billed the prompt; no output was delivered, so none is charged.
 * 4. A completed successful response priced by other units and reporting no usage → exactly those units:
 *    images counted in the response, characters of a speech request's input.
 * 5. A successful response that ended without final usage (the client left mid-stream, the stream was cut
 *    or stalled, or the caller did not ask for usage) → the input (as reported at the start, else
 *    estimated) plus the output actually delivered, counted with a tokenizer; never more output than the
 *    user received. A non-streaming body cut before its end delivers no usable output: input only.
 *
 * Estimated charges are marked so on the charge and the request record.
 */
import type { EndCause, Usage } from "./usage.ts";

export interface RequestOutcome {
  cause: EndCause;
  /** HTTP status the provider answered with; 0 when it never answered. */
  status: number;
  /** The response head reached the gateway (and was sent to the client). */
  responded: boolean;
  /** The whole request body was sent toward the provider. */
  dispatched: boolean;
  /** Final usage the provider reported, if any. */
  reported: Usage | null;
  /** Input usage reported at the start of a stream (Anthropic), if any. */
  reportedInput: Usage | null;
  /** Tokens of the text delivered to the client (streams), by tokenizer; null for non-streaming bodies. */
  deliveredOutputTokens: () => number | null;
  /** Input tokens of the request, by tokenizer. */
  estimatedInputTokens: () => number;
  /** Characters of a text-to-speech request's input (billed like input); 0 for other routes. */
  inputCharacters: number;
  /** Images in the response body (image APIs). */
  responseImages: () => number;
}

export interface ChargeBasis {
  usage: Usage;
  estimated: boolean;
  /** Which rule applied, for the record and the docs: reported | failed | input_only | delivered. */
  rule: "reported" | "failed" | "input_only" | "delivered" | "units";
}

const NONE: Usage = { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 };

export function chargeBasis(o: RequestOutcome): ChargeBasis {
  if (o.reported) return { usage: o.reported, estimated: false, rule: "reported" };
  if (o.responded && o.status >= 400) return { usage: NONE, estimated: false, rule: "failed" };
  const characters = o.inputCharacters > 0 ? { characters: o.inputCharacters } : {};
  if (!o.responded) {
    if (o.cause === "client_cancelled" && o.dispatched) {
      return { usage: { inputTokens: o.estimatedInputTokens(), outputTokens: 0, cachedInputTokens: 0, ...characters }, estimated: true, rule: "input_only" };
    }
    return { usage: NONE, estimated: false, rule: "failed" };
  }
  if (o.cause === "completed") {
    const images = o.responseImages();
    if (images > 0 || o.inputCharacters > 0) {
      return { usage: { ...NONE, ...characters, ...(images > 0 ? { images } : {}) }, estimated: false, rule: "units" };
    }
  }
  const input = o.reportedInput ?? { inputTokens: o.estimatedInputTokens(), outputTokens: 0, cachedInputTokens: 0 };
  const delivered = o.deliveredOutputTokens();
  return {
    usage: { inputTokens: input.inputTokens, outputTokens: delivered ?? 0, cachedInputTokens: input.cachedInputTokens, ...characters },
    estimated: true,
    rule: delivered === null ? "input_only" : "delivered",
  };
}
