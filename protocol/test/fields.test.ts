/**
 * The body scanners read what a provider's parser reads: a body they accept parses (JSON.parse, which keeps the
 * last of repeated keys) to the same model; every well-formed body is accepted however it is chunked; a repeated
 * top-level field anywhere in the body — after any amount of padding — is refused; billing fields of the wrong
 * type are refused; arbitrary bytes never throw.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { FIELD_BYTES_MAX, FILE_IDS_MAX, JsonBodyScanner, MultipartBodyScanner, type BodyScanner } from "../src/fields.ts";

function scanInChunks(input: string | Uint8Array, cuts: number[], scanner: BodyScanner = new JsonBodyScanner()): BodyScanner {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let at = 0;
  for (const c of [...cuts.map((n) => n % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
    scanner.push(bytes.subarray(at, Math.max(at, c)));
    at = Math.max(at, c);
  }
  scanner.end();
  return scanner;
}

const extraKey = fc
  .string({ maxLength: 8 })
  .filter(
    (k) =>
      ![
        "model",
        "stream",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "n",
        "best_of",
        "input",
        "tools",
        "web_search_options",
        "previous_response_id",
        "conversation",
        "mcp_servers",
        "container",
        "prompt",
      ].includes(k),
  );

describe("JsonBodyScanner", () => {
  it("accepts every well-formed body and reads model, stream and the caps however it is chunked", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.boolean(),
        fc.option(fc.nat({ max: 999_999_999 })),
        fc.dictionary(extraKey, fc.jsonValue({ maxDepth: 4 }), { maxKeys: 5 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.boolean(),
        (model, stream, maxTokens, extra, cuts, modelFirst) => {
          const caps = maxTokens === null ? {} : { max_tokens: maxTokens };
          const obj = modelFirst ? { model, ...extra, stream, ...caps } : { ...extra, ...caps, stream, model };
          const s = scanInChunks(JSON.stringify(obj, null, modelFirst ? 0 : 2), cuts);
          expect(s.problem).toBeNull();
          expect(s.complete).toBe(true);
          expect(s.fields.model).toBe(model);
          expect(s.fields.stream).toBe(stream);
          expect(s.fields.maxOutputTokens).toBe(maxTokens);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("a body it accepts is one JSON.parse reads, to the same model — whatever is done to its bytes", () => {
    const alphabet = fc.constantFrom(
      ...'{}[]",:\\ \n0123456789.-+eEtrufalsn\u00e9'.split(""),
      '"model"',
      '"model":"x"',
      ',"model":"gpt-4o"',
      "\\u00",
      "\u0001",
    );
    fc.assert(
      fc.property(
        fc.dictionary(extraKey, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 }),
        fc.array(fc.tuple(fc.nat(), fc.nat({ max: 3 }), alphabet), { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 4 }),
        (extra, edits, cuts) => {
          let text = JSON.stringify({ model: "gpt-4o-mini", ...extra, stream: true });
          for (const [pos, del, ins] of edits) {
            const p = pos % (text.length + 1);
            text = text.slice(0, p) + ins + text.slice(p + del);
          }
          const s = scanInChunks(text, cuts);
          if (!s.complete) return; // refusing a mangled body is always safe
          const parsed = JSON.parse(text) as Record<string, unknown>;
          expect(typeof parsed).toBe("object");
          expect(parsed.model ?? null).toBe(s.fields.model);
          expect(parsed.stream === undefined || parsed.stream === null ? null : parsed.stream).toBe(s.fields.stream);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it("refuses a repeated top-level field anywhere in the body, even after 300 KiB of padding", () => {
    const padding = " ".repeat(300 * 1024);
    for (const [field, value] of [
      ["model", '"gpt-4o"'],
      ["stream", "false"],
      ["max_tokens", "100000"],
      ["n", "8"],
      ["temperature", "1"],
    ] as const) {
      const body = `{"model":"gpt-4o-mini","stream":true,"max_tokens":1,"n":1,"temperature":0,"messages":[]${padding},"${field}":${value}}`;
      for (const cuts of [[], [17, 300_000], [body.length - 3]]) {
        const s = scanInChunks(body, cuts);
        expect(s.complete).toBe(false);
        expect(s.problem).toContain(`repeats the field \`${field}\``);
      }
    }
    // Escapes do not hide a key: "mod\u0065l" is "model".
    expect(scanInChunks('{"model":"a","mod\\u0065l":"b"}', []).problem).toContain("repeats the field `model`");
    // Nested keys of the same name are content, not fields.
    const nested = scanInChunks('{"messages":[{"model":"nested","model":"twice"}],"metadata":{"model":"x"},"model":"gpt-4o-mini"}', [5, 17]);
    expect(nested.problem).toBeNull();
    expect(nested.fields.model).toBe("gpt-4o-mini");
  });

  it("refuses billing fields it cannot read as a provider would", () => {
    const cases: [string, RegExp][] = [
      ['{"model":5}', /`model` must be a string/],
      ['{"model":["gpt-4o"]}', /`model` must be a string/],
      [`{"model":"${"m".repeat(FIELD_BYTES_MAX + 1)}"}`, /`model` must be a string of at most/],
      ['{"model":"a","stream":"true"}', /`stream` must be true or false/],
      ['{"model":"a","stream":1}', /`stream` must be true or false/],
      ['{"model":"a","background":"true"}', /`background` must be true or false/],
      ['{"model":"a","background":[true]}', /`background` must be true or false/],
      ['{"model":"a","background":1}', /`background` must be true or false/],
      ['{"model":"a","max_tokens":1e3}', /`max_tokens` must be a whole number/],
      ['{"model":"a","max_tokens":"100"}', /`max_tokens` must be a whole number/],
      ['{"model":"a","n":-1}', /`n` must be a whole number/],
      ['{"model":"a","best_of":2.5}', /`best_of` must be a whole number/],
      ['{"model":"a","max_completion_tokens":12345678901}', /must be a whole number/],
      ["[1,2]", /must be a JSON object/],
      ['{"a" 1}', /not valid JSON/],
      ['{"a":1,}', /not valid JSON/],
      ['{"a":[1,]}', /not valid JSON/],
      ['{"a":tru}', /not valid JSON/],
      ['{"a":"\\x"}', /bad escape/],
      ['{"a":"\\u12g4"}', /four hex digits/],
      ['{"a":"line\nbreak"}', /control character/],
      ['{"model":"a"} {}', /data after its closing brace/],
      ['{"model":"a"', /ends before its closing brace/],
      ["", /empty/],
    ];
    for (const [body, problem] of cases) expect(scanInChunks(body, []).problem, body).toMatch(problem);
    // null means absent, as providers read it.
    const nulls = scanInChunks('{"model":"a","stream":null,"max_tokens":null,"n":null}', []);
    expect(nulls.complete).toBe(true);
    expect(nulls.fields).toMatchObject({ stream: null, maxOutputTokens: null, n: null });
    // `background` is read as the provider reads it: true, false or absent; nested ones are content.
    expect(scanInChunks('{"model":"a","background":true}', [20]).fields.background).toBe(true);
    expect(scanInChunks('{"background":false,"model":"a"}', []).fields.background).toBe(false);
    expect(scanInChunks('{"model":"a","metadata":{"background":true},"background":null}', []).fields.background).toBeNull();
  });

  it("counts the characters of a top-level input string and reads n and best_of, however the body is chunked", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 60 }), fc.integer({ min: 1, max: 10 }), fc.array(fc.nat(), { maxLength: 8 }), (input, n, cuts) => {
        const s = scanInChunks(JSON.stringify({ model: "tts-1", input, voice: "alloy", n, best_of: n + 1, nested: { input: "not this one" } }), cuts);
        expect(s.fields.inputChars).toBe([...input].length);
        expect(s.fields.n).toBe(n);
        expect(s.fields.bestOf).toBe(n + 1);
      }),
      { numRuns: 500 },
    );
    expect(scanInChunks('{"model":"tts-1","input":"a\\n\\u00e9\\"b"}', [19, 22]).fields.inputChars).toBe(5);
  });

  it("notes what makes the input larger than the body, and the tools billed per call", () => {
    const plain = scanInChunks(
      JSON.stringify({
        model: "gpt-4o",
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "hi" },
              { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
            ],
          },
        ],
      }),
      [],
    );
    expect(plain.fields).toMatchObject({ references: false, imageParts: 1, billedTools: [] });
    for (const body of [
      { model: "gpt-4o", previous_response_id: "resp_123", input: "go on" },
      { model: "gpt-4o", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/cat.png" } }] }] },
      { model: "gpt-4o", input: [{ role: "user", content: [{ type: "input_file", file_id: "file_1" }] }] },
      { model: "claude-sonnet-4-5", messages: [{ role: "user", content: [{ type: "document", source: { type: "base64", data: "JVBER" } }] }] },
      { model: "gpt-4o", prompt: { id: "pmpt_1" } },
      { model: "gpt-4o", conversation: "conv_1", input: "hi" },
    ]) {
      expect(scanInChunks(JSON.stringify(body), [7]).fields.references, JSON.stringify(body)).toBe(true);
    }
    expect(scanInChunks(JSON.stringify({ model: "gpt-4o", previous_response_id: null, prompt: "text" }), []).fields.references).toBe(false);
    const tools = scanInChunks(
      JSON.stringify({
        model: "gpt-4o",
        tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }, { type: "web_search_preview" }],
      }),
      [3],
    );
    expect(tools.fields.billedTools).toEqual(["web_search_preview"]);
    expect(
      scanInChunks(JSON.stringify({ model: "claude-sonnet-4-5", tools: [{ type: "web_search_20250305", name: "web_search" }] }), []).fields.billedTools,
    ).toEqual(["web_search_20250305"]);
    expect(scanInChunks(JSON.stringify({ model: "gpt-4o-search-preview", web_search_options: {} }), []).fields.billedTools).toEqual(["web_search"]);
    // A `type` of a billed tool's name inside messages is content (an earlier call replayed), not a new call.
    expect(scanInChunks(JSON.stringify({ model: "gpt-4o", input: [{ type: "web_search_call", id: "ws_1" }] }), []).fields.billedTools).toEqual([]);
  });

  it("never throws on arbitrary bytes, and stays bounded on deep nesting", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 3 }), (bytes, cuts) => {
        scanInChunks(bytes, cuts);
      }),
      { numRuns: 3000 },
    );
    expect(scanInChunks(`{"a":${"[".repeat(100_000)}`, []).problem).toMatch(/nested deeper/);
  });
});

describe("stored files a JSON body names", () => {
  it("collects the distinct file-… ids of file_id at any depth (chat file parts, Responses input_file parts), however chunked", () => {
    const body = JSON.stringify({
      model: "gpt-4o",
      messages: [
        {
          role: "user",
          content: [
            { type: "file", file: { file_id: "file-abc123" } },
            { type: "text", text: "file_id" },
          ],
        },
        {
          role: "user",
          content: [
            { type: "input_file", file_id: "file-XyZ_9" },
            { type: "file", file: { file_id: "file-abc123" } },
          ],
        },
        // Not a stored file of the Files API (a container file): not routed by.
        { role: "assistant", content: [{ type: "container_file_citation", file_id: "cfile_1" }] },
      ],
    });
    for (const cuts of [[], [1], [37, 90], [...Array(body.length).keys()]]) {
      const s = scanInChunks(body, cuts);
      expect(s.problem).toBeNull();
      expect(s.fields.fileIds).toEqual(["file-abc123", "file-XyZ_9"]);
      expect(s.fields.references).toBe(true);
    }
    expect(scanInChunks(JSON.stringify({ model: "m", file_id: "file-top" }), []).fields.fileIds).toEqual([]);
  });

  it("refuses a body naming more than FILE_IDS_MAX distinct files", () => {
    const parts = (n: number) => Array.from({ length: n }, (_, i) => ({ type: "input_file", file_id: `file-${i}` }));
    expect(scanInChunks(JSON.stringify({ model: "m", input: [{ role: "user", content: parts(FILE_IDS_MAX) }] }), []).problem).toBeNull();
    expect(scanInChunks(JSON.stringify({ model: "m", input: [{ role: "user", content: parts(FILE_IDS_MAX + 1) }] }), []).problem).toMatch(
      /more than 16 stored files/,
    );
  });
});

describe("MultipartBodyScanner", () => {
  const boundary = "----wsboundary123";
  const part = (name: string, value: string, file?: string) =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"${file ? `; filename="${file}"\r\nContent-Type: application/octet-stream` : ""}\r\n\r\n${value}\r\n`;
  const bodyOf = (...parts: string[]) => parts.join("") + `--${boundary}--\r\n`;

  it("finds the model and n fields across chunk boundaries, and accepts the body", () => {
    const body = new TextEncoder().encode(
      bodyOf(part("file", `${"x".repeat(5000)}\r\n--${boundary.slice(0, 5)}`, "a.mp3"), part("model", "whisper-1"), part("n", "3")),
    );
    for (const step of [1, 7, 64, 4096, body.length]) {
      const s = new MultipartBodyScanner(boundary);
      for (let i = 0; i < body.length; i += step) s.push(body.subarray(i, i + step));
      s.end();
      expect(s.problem).toBeNull();
      expect(s.complete).toBe(true);
      expect(s.fields.model).toBe("whisper-1");
      expect(s.fields.n).toBe(3);
    }
  });

  it("refuses a repeated model or n field, a bad n, and a body cut before its closing boundary", () => {
    const twice = bodyOf(part("model", "whisper-1"), part("file", "y".repeat(70_000), "b.wav"), part("model", "gpt-4o-transcribe"));
    expect(scanInChunks(twice, [100, 40_000], new MultipartBodyScanner(boundary)).problem).toMatch(/repeats the field `model`/);
    expect(scanInChunks(bodyOf(part("model", "dall-e-2"), part("n", "2"), part("n", "10")), [], new MultipartBodyScanner(boundary)).problem).toMatch(
      /repeats the field `n`/,
    );
    expect(scanInChunks(bodyOf(part("model", "dall-e-2"), part("n", "ten")), [], new MultipartBodyScanner(boundary)).problem).toMatch(
      /`n` must be a whole number/,
    );
    expect(scanInChunks(part("model", "whisper-1"), [], new MultipartBodyScanner(boundary)).problem).toMatch(/closing boundary/);
  });

  it("reads a Files API upload's purpose (no model) and refuses a repeated purpose or file part", () => {
    const upload = scanInChunks(
      bodyOf(part("purpose", "user_data"), part("file", "z".repeat(10_000), "doc.pdf")),
      [3, 200],
      new MultipartBodyScanner(boundary),
    );
    expect(upload.problem).toBeNull();
    expect(upload.fields).toMatchObject({ purpose: "user_data", model: null });
    const twoPurposes = bodyOf(part("purpose", "user_data"), part("file", "a", "a.txt"), part("purpose", "batch"));
    expect(scanInChunks(twoPurposes, [], new MultipartBodyScanner(boundary)).problem).toMatch(/repeats the field `purpose`/);
    const twoFiles = bodyOf(part("purpose", "user_data"), part("file", "a", "a.txt"), part("file", "b", "b.txt"));
    expect(scanInChunks(twoFiles, [50], new MultipartBodyScanner(boundary)).problem).toMatch(/repeats the field `file`/);
  });
});
