import { describe, expect, it } from "vitest";
import { ContentScreen, TermMatcher } from "./content_screen.ts";

const rules = [
  { id: "cr_en", term: "Forbidden Phrase" },
  { id: "cr_zh", term: "违禁词" },
  { id: "cr_he", term: "he" },
  { id: "cr_she", term: "shells" },
];
const matcher = new TermMatcher(rules);
const enc = (s: string) => new TextEncoder().encode(s);

/** Pushes a body one byte at a time (every chunk boundary) and returns the rule matched. */
function screenBytewise(body: string): string | null {
  const screen = new ContentScreen(matcher);
  for (const b of enc(body)) {
    const hit = screen.push(Uint8Array.of(b));
    if (hit) return hit;
  }
  return null;
}

describe("prohibited-term matcher", () => {
  it("finds terms by Aho–Corasick, overlapping ones included", () => {
    expect(matcher.find("ushers")).toBe("cr_he");
    expect(
      new TermMatcher([
        { id: "a", term: "abcd" },
        { id: "b", term: "bc" },
      ]).find("xabcx"),
    ).toBe("b");
    expect(matcher.find("nothing to see")).toBeNull();
  });

  it("normalises width, case and zero-width characters, in English and Chinese", () => {
    const m = new TermMatcher([rules[0]!, rules[1]!]);
    expect(m.find("a ＦＯＲＢＩＤＤＥＮ ｐｈｒａｓｅ here")).toBe("cr_en");
    expect(m.find("FORBID\u200BDEN\u00ADPHRASE".replace("DEN", "DEN ").replace("PHRASE", "PHRASE"))).toBe("cr_en");
    expect(m.find("这是违\u200d禁词。")).toBe("cr_zh");
    expect(m.find("forbidden  phrase")).toBeNull();
  });

  it("reads JSON strings however the body is chunked: escapes, \\u escapes, surrogate pairs, multi-byte UTF-8", () => {
    expect(screenBytewise(JSON.stringify({ messages: [{ role: "user", content: "say 违禁词 now" }] }))).toBe("cr_zh");
    expect(screenBytewise('{"content":"\\u8fdd\\u7981\\u8bcd"}')).toBe("cr_zh");
    expect(screenBytewise('{"content":"Forbidden\\u0020PHRASE 😀"}')).toBe("cr_en");
    expect(screenBytewise(JSON.stringify({ content: "😀 clean text only" }))).toBeNull();
  });

  it("never matches across two strings, nor inside a data URL, nor outside strings", () => {
    expect(screenBytewise('{"a":"Forbidden","b":" Phrase"}')).toBeNull();
    expect(screenBytewise(JSON.stringify({ image_url: { url: "data:text/plain,forbidden phrase" } }))).toBeNull();
    expect(new ContentScreen(new TermMatcher([{ id: "n", term: "123" }])).push(enc('{"max_tokens":123}'))).toBeNull();
  });

  it("keeps only a hash of the bytes read", () => {
    const screen = new ContentScreen(matcher);
    expect(screen.push(enc('{"content":"违禁词"}'))).toBe("cr_zh");
    expect(screen.digest()).toMatch(/^[0-9a-f]{64}$/);
  });

  it("costs little on a large body (1 MiB of text)", () => {
    const body = enc(JSON.stringify({ messages: [{ role: "user", content: "lorem ipsum dolor sit amet 你好世界 ".repeat(30_000) }] }));
    const screen = new ContentScreen(matcher);
    const t = performance.now();
    for (let i = 0; i < body.length; i += 65_536) screen.push(body.subarray(i, i + 65_536));
    const ms = performance.now() - t;
    expect(ms).toBeLessThan(1_000);
    console.log(`content screen: ${(body.length / 1_048_576).toFixed(2)} MiB in ${ms.toFixed(1)} ms`);
  });
});
