/**
 * Behaviour directives for the mock provider. A test writes them into the prompt text, so they travel
 * through the gateway and the agent untouched, e.g. `[mock chunks=64 delay_ms=20 stall_after=3]`.
 */
export interface Directives {
  /** Number of streamed content chunks (default 5). */
  chunks: number;
  /** Delay between chunks, ms (default 0). */
  delayMs: number;
  /** Delay before the response head, ms (default 0). */
  firstDelayMs: number;
  /** Stop sending after this many chunks and keep the connection open (a stalled stream). */
  stallAfter: number | null;
  /** Force an error: 429 (rate limit), 400 context (context length), 500, 503 (overloaded). */
  status: number | null;
  error: "context" | null;
  /** Make the whole response body (non-streaming) or the content (streaming) about this many bytes. */
  bytes: number | null;
  /** Omit the usage chunk even when the client asked for it. */
  noUsage: boolean;
  /** An opaque label the mock keeps on the request's record, so a benchmark can match its own requests. */
  tag: string | null;
  /**
   * Output tokens the usage reports per result, whatever was sent (hidden reasoning, or a provider that
   * reports more than it delivered); null reports one token per chunk.
   */
  outputTokens: number | null;
  /** Input tokens the usage reports, whatever was sent (a provider that makes up usage); null: bytes ÷ 4. */
  inputTokens: number | null;
  /** A background response (`background: true`): how long it stays `queued`, then `in_progress`, ms (on the mock's clock). */
  bgQueueMs: number;
  bgRunMs: number;
  /** How a background response ends when it is not cancelled first. */
  bgEnd: "completed" | "failed" | "incomplete";
  /** Prompt-cache reads and writes a Message Batch request's usage reports (Anthropic's `cache_*_input_tokens`), tokens. */
  cacheRead: number | null;
  cacheWrite: number | null;
}

const DEFAULTS: Directives = {
  chunks: 5,
  delayMs: 0,
  firstDelayMs: 0,
  stallAfter: null,
  status: null,
  error: null,
  bytes: null,
  noUsage: false,
  tag: null,
  outputTokens: null,
  inputTokens: null,
  bgQueueMs: 0,
  bgRunMs: 1_000,
  bgEnd: "completed",
  cacheRead: null,
  cacheWrite: null,
};

const MARKER = /\[mock((?:\s+[a-z_]+=[a-z0-9_.]+)*)\s*\]/;

/** Finds the first `[mock …]` directive in a (possibly large) raw body; only the head is searched. */
export function parseDirectives(body: Buffer): Directives {
  const head = body.subarray(0, 64 * 1024).toString("latin1");
  const match = MARKER.exec(head);
  const d = { ...DEFAULTS };
  if (!match) return d;
  for (const pair of match[1]!.trim().split(/\s+/).filter(Boolean)) {
    const [key, value = ""] = pair.split("=");
    const n = Number(value);
    switch (key) {
      case "chunks":
        d.chunks = n;
        break;
      case "delay_ms":
        d.delayMs = n;
        break;
      case "first_delay_ms":
        d.firstDelayMs = n;
        break;
      case "stall_after":
        d.stallAfter = n;
        break;
      case "status":
        d.status = n;
        break;
      case "error":
        d.error = value === "context" ? "context" : null;
        break;
      case "bytes":
        d.bytes = n;
        break;
      case "no_usage":
        d.noUsage = value === "1";
        break;
      case "tag":
        d.tag = value;
        break;
      case "output_tokens":
        d.outputTokens = n;
        break;
      case "input_tokens":
        d.inputTokens = n;
        break;
      case "bg_queue_ms":
        d.bgQueueMs = n;
        break;
      case "bg_run_ms":
        d.bgRunMs = n;
        break;
      case "cache_read":
        d.cacheRead = n;
        break;
      case "cache_write":
        d.cacheWrite = n;
        break;
      case "bg_end":
        d.bgEnd = value === "failed" || value === "incomplete" ? value : "completed";
        break;
    }
  }
  return d;
}
