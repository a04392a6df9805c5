/** What a request used and how it ended: the domain types billing charges by. */

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  /** Input tokens served from the provider's prompt cache (billed at the cached-input price). */
  cachedInputTokens: number;
  /** Output tokens of hidden reasoning, as reported (part of `outputTokens`; checked against the request's cap). */
  reasoningTokens?: number;
  /** Seconds of input audio (transcription usage `{type: "duration", seconds}`), rounded up. */
  audioSeconds?: number;
  /** Images generated (image APIs billed per image). */
  images?: number;
  /** Input characters (text to speech). */
  characters?: number;
}

/** Why a proxied request ended. The charge rule per cause is in `charge_rules.ts` and docs/billing.md. */
export type EndCause = "completed" | "client_cancelled" | "upstream_error" | "upstream_timeout" | "agent_lost" | "refused" | "gateway_error";
