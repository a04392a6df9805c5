/**
 * The documented input estimate (docs/billing.md), written independently of the streaming implementation
 * for tests to compare against: the o200k tokens of every JSON string of the parsed body — keys and values,
 * each followed by a space — with strings of BINARY_STRING_BYTES_MIN bytes or more and no whitespace skipped.
 */
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { BINARY_STRING_BYTES_MIN } from "../estimate.ts";

export function documentedInputEstimate(body: unknown): number {
  const strings: string[] = [];
  const walk = (v: unknown) => {
    if (typeof v === "string") strings.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) {
        strings.push(k);
        walk(x);
      }
    }
  };
  walk(body);
  const binary = (s: string) => Buffer.byteLength(s) >= BINARY_STRING_BYTES_MIN && !/[ \n\t]/.test(s);
  return countTokens(strings.map((s) => (binary(s) ? " " : `${s} `)).join(""));
}
