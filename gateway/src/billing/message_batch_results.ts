/**
 * Sums an ended Message Batch's usage from its results file (JSON Lines, one `{custom_id, result}` per request,
 * streamed from the provider through the agent): every `succeeded` result's `message.usage` (input, output,
 * cache writes and cache reads) is added up; `errored`, `canceled` and `expired` results are not billed by the
 * provider and add nothing. One line is held at a time (at most RESULT_LINE_BYTES_MAX), whatever the file's size.
 */
import { concatBytes } from "@wellspring/protocol";
import type { Usage } from "./usage.ts";
import { usageFromObject } from "./usage_tap.ts";

/** Longest results line read, bytes (a message of the largest output is well under 2 MB). A longer one is counted unreadable. */
export const RESULT_LINE_BYTES_MAX = 8 * 1024 * 1024;

export interface ResultCounts {
  succeeded: number;
  errored: number;
  canceled: number;
  expired: number;
  /** Lines that are not a result (not JSON, too long, an unknown type, or a succeeded result without usage). */
  unreadable: number;
}

export class BatchResultsTally {
  readonly counts: ResultCounts = { succeeded: 0, errored: 0, canceled: 0, expired: 0, unreadable: 0 };
  readonly usage: Usage = { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 };
  #line: Uint8Array[] = [];
  #lineBytes = 0;
  #overlong = false;
  readonly #decoder = new TextDecoder();

  push(chunk: Uint8Array): void {
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) {
        this.#append(chunk.subarray(from));
        return;
      }
      this.#append(chunk.subarray(from, nl));
      this.#endLine();
      from = nl + 1;
    }
  }

  /** The file ended: a last line without its newline is read too. */
  end(): void {
    if (this.#lineBytes > 0 || this.#overlong) this.#endLine();
  }

  #append(part: Uint8Array): void {
    if (part.length === 0 || this.#overlong) return;
    if (this.#lineBytes + part.length > RESULT_LINE_BYTES_MAX) {
      this.#overlong = true;
      this.#line = [];
      return;
    }
    this.#line.push(part.slice());
    this.#lineBytes += part.length;
  }

  #endLine(): void {
    const overlong = this.#overlong;
    const parts = this.#line;
    this.#line = [];
    this.#lineBytes = 0;
    this.#overlong = false;
    if (overlong) {
      this.counts.unreadable++;
      return;
    }
    const text = this.#decoder.decode(concatBytes(parts)).trim();
    if (text === "") return;
    this.#result(text);
  }

  #result(text: string): void {
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch {
      this.counts.unreadable++;
      return;
    }
    const result = isObject(line) && isObject(line.result) ? line.result : null;
    const type = result?.type;
    if (type === "errored" || type === "canceled" || type === "expired") {
      this.counts[type]++;
      return;
    }
    const message = type === "succeeded" && isObject(result!.message) ? result!.message : null;
    const usage = message && isObject(message.usage) ? usageFromObject(message.usage) : null;
    if (!usage) {
      this.counts.unreadable++;
      return;
    }
    this.counts.succeeded++;
    this.usage.inputTokens += usage.inputTokens;
    this.usage.outputTokens += usage.outputTokens;
    this.usage.cachedInputTokens += usage.cachedInputTokens;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
