import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { JsonFieldScanner, MultipartFieldScanner } from "./field_scanner.ts";

function scanInChunks(text: string, cuts: number[]): JsonFieldScanner {
  const bytes = Buffer.from(text);
  const s = new JsonFieldScanner();
  let at = 0;
  for (const c of [...cuts.map((n) => n % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
    s.push(bytes.subarray(at, Math.max(at, c)));
    at = Math.max(at, c);
  }
  return s;
}

describe("JsonFieldScanner", () => {
  it("finds the top-level model and stream however the body is chunked", () => {
    fc.assert(fc.property(
      fc.string({ maxLength: 40 }),
      fc.boolean(),
      fc.dictionary(fc.string({ maxLength: 8 }).filter((k) => k !== "model" && k !== "stream"), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
      fc.array(fc.nat(), { maxLength: 6 }),
      fc.boolean(),
      (model, stream, extra, cuts, modelFirst) => {
        const obj = modelFirst ? { model, ...extra, stream } : { ...extra, stream, model };
        const s = scanInChunks(JSON.stringify(obj, null, modelFirst ? 0 : 2), cuts);
        expect(s.malformed).toBeNull();
        expect(s.fields.model).toBe(model);
        if (modelFirst) return; // scanning may stop reading after the model; stream is bookkeeping only
        expect(s.fields.stream).toBe(stream);
      },
    ), { numRuns: 500 });
  });

  it("counts the characters of a top-level input string and reads n, however the body is chunked", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 60 }), fc.integer({ min: 1, max: 10 }), fc.array(fc.nat(), { maxLength: 8 }), (input, n, cuts) => {
      const s = scanInChunks(JSON.stringify({ model: "tts-1", input, voice: "alloy", n, nested: { input: "not this one" } }), cuts);
      expect(s.fields.inputChars).toBe([...input].length);
      expect(s.fields.n).toBe(n);
    }), { numRuns: 500 });
    expect(scanInChunks('{"model":"tts-1","input":"a\\n\\u00e9\\"b"}', [19, 22]).fields.inputChars).toBe(5);
  });

  it("ignores nested model keys and reports non-objects", () => {
    const s = scanInChunks('{"messages":[{"model":"nested"}],"metadata":{"model":"x"},"model":"gpt-4o-mini"}', [5, 17]);
    expect(s.fields.model).toBe("gpt-4o-mini");
    expect(scanInChunks("[1,2]", []).malformed).toMatch(/JSON object/);
    expect(scanInChunks('{"a" 1}', []).malformed).toMatch(/not valid JSON/);
    const none = scanInChunks('{"messages":[]}', []);
    expect(none.settled).toBe(true);
    expect(none.fields.model).toBeNull();
  });

  it("never throws on arbitrary bytes", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      const s = new JsonFieldScanner();
      s.push(bytes);
    }), { numRuns: 2000 });
  });
});

describe("MultipartFieldScanner", () => {
  it("finds the model field across chunk boundaries", () => {
    const boundary = "----wsboundary123";
    const body = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\nContent-Type: audio/mpeg\r\n\r\n${"x".repeat(5000)}\r\n--${boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n--${boundary}--\r\n`;
    const bytes = Buffer.from(body);
    for (const step of [1, 7, 64, 4096, bytes.length]) {
      const s = new MultipartFieldScanner(boundary);
      for (let i = 0; i < bytes.length; i += step) s.push(bytes.subarray(i, i + step));
      expect(s.fields.model).toBe("whisper-1");
    }
  });
});
