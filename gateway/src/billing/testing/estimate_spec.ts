/**
 * The documented input estimate (docs/billing.md), written independently of the streaming implementation
 * for tests to compare against: the o200k tokens of every JSON string of the parsed body — keys and values,
 * each followed by a space — where data URLs are not counted, and a whitespace-free run longer than
 * LONG_RUN_BYTES is cut out of the text and counted as one token per 4 bytes, or not at all when it is
 * made only of base64 characters.
 */
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { LONG_RUN_BYTES, LONG_RUN_BYTES_PER_TOKEN } from "../estimate.ts";

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
  let sized = 0;
  const text = strings.map((s) => {
    if (s.startsWith("data:")) return " ";
    const kept = s.replace(/[^ \n\t\r]+/g, (run) => {
      const bytes = Buffer.byteLength(run);
      if (bytes <= LONG_RUN_BYTES) return run;
      if (!/^[A-Za-z0-9+/=_-]+$/.test(run)) sized += Math.ceil(bytes / LONG_RUN_BYTES_PER_TOKEN);
      return "";
    });
    return `${kept} `;
  });
  return countTokens(text.join("")) + sized;
}
