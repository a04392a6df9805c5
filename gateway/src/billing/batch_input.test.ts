/**
 * The batch input scanner against hostile files: its bound is the sum of what each line would hold online, it is
 * the same whatever the chunking, and a file it cannot bound (several models, bad JSON, repeated keys, an
 * endpoint not billed, a huge line) is recorded as not batchable with the reason.
 */
import { describe, expect, it } from "vitest";
import { BATCH_LINE_BYTES_MAX, BATCH_REQUESTS_MAX, BatchInputScanner, repeatedKey, type BatchInputSummary } from "./batch_input.ts";
import { modelLimits } from "./worst_case.ts";

const limitsOf = (model: string) => modelLimits(model, 32_768);

function line(body: Record<string, unknown>, extra: Record<string, unknown> = {}, url = "/v1/chat/completions"): string {
  return JSON.stringify({ custom_id: `r${Math.random()}`, method: "POST", url, body, ...extra });
}

function scan(text: string | Buffer, chunkBytes = 7): BatchInputSummary {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const s = new BatchInputScanner(limitsOf);
  for (let at = 0; at < bytes.length; at += chunkBytes) s.push(bytes.subarray(at, at + chunkBytes));
  return s.end();
}

const chat = (max: number) => ({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }], max_tokens: max });

describe("batch input scanner", () => {
  it("sums each line's online worst case: input ≤ the body's bytes, output ≤ its cap (else the model's maximum) × n", () => {
    const a = chat(100);
    const b = { model: "gpt-4o-mini", messages: [{ role: "user", content: "hello there" }], n: 2 };
    const file = `${line(a)}\n${line(b)}\n`;
    const bytesA = Buffer.byteLength(JSON.stringify(a));
    const bytesB = Buffer.byteLength(JSON.stringify(b));
    const expected = { batchable: true, model: "gpt-4o-mini", endpoint: "/v1/chat/completions", lines: 2, worstInputTokens: bytesA + bytesB };
    expect(scan(file)).toEqual({ ...expected, worstOutputTokens: 100 + 16_384 * 2 });
    // The same bound whatever the chunking, with CRLF line ends and no final newline.
    expect(scan(file, 1)).toEqual(scan(file, 64 * 1024));
    expect(scan(`${line(a)}\r\n${line(b)}`, 3)).toEqual({ ...expected, worstOutputTokens: 100 + 16_384 * 2 });
    // Blank lines are no requests.
    expect(scan(`\n${line(a)}\n\n\r\n`)).toMatchObject({ batchable: true, lines: 1 });
  });

  it("bounds embeddings by input only, and a body that points elsewhere by the whole context window", () => {
    const e = { model: "text-embedding-3-small", input: "abc" };
    expect(scan(line(e, {}, "/v1/embeddings"))).toMatchObject({
      batchable: true,
      worstOutputTokens: 0,
      worstInputTokens: Buffer.byteLength(JSON.stringify(e)),
    });
    const r = { model: "gpt-4o-mini", input: [{ role: "user", content: [{ type: "input_file", file_id: "file-abc" }] }], max_output_tokens: 10 };
    expect(scan(line(r, {}, "/v1/responses"))).toMatchObject({ batchable: true, worstInputTokens: 128_000, worstOutputTokens: 10 });
  });

  it("records a file it cannot bound as not batchable, with the reason", () => {
    const ok = line(chat(10));
    const cases: [string, RegExp][] = [
      [`${ok}\n${line({ ...chat(10), model: "gpt-4o" })}\n`, /line 2 names the model gpt-4o, another than the lines before \(gpt-4o-mini\)/],
      [`${ok}\n{"custom_id": "x", "method": "POST",\n`, /line 2 is not JSON/],
      [`${ok}\n[1,2]\n`, /line 2 is not a JSON object/],
      [line(chat(10), {}, "/v1/images/generations"), /`url` must be one of/],
      [`${ok}\n${line(chat(10), {}, "/v1/responses")}`, /line 2 names the endpoint \/v1\/responses, another/],
      [line(chat(10), { method: "GET" }), /`method` must be "POST"/],
      [line({ messages: [] }), /names no model/],
      [line({ ...chat(10), stream: true }), /cannot stream/],
      ["", /no requests/],
      ["\n\r\n", /no requests/],
    ];
    for (const [file, problem] of cases) {
      const got = scan(file);
      expect(got.batchable, file.slice(0, 80)).toBe(false);
      if (!got.batchable) expect(got.problem).toMatch(problem);
    }
  });

  it("refuses a repeated key in the line or its body (decoded), but not in deeper objects", () => {
    const dupBody = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","max_tokens":1,"model":"gpt-4o"}}`;
    expect(scan(dupBody)).toEqual({ batchable: false, problem: "line 1 repeats the key `model`" });
    const escaped = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","max_tokens":1,"mod\\u0065l":"gpt-4o"}}`;
    expect(scan(escaped)).toEqual({ batchable: false, problem: "line 1 repeats the key `model`" });
    const dupLine = `{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"},"body":{"model":"gpt-4o"}}`;
    expect(scan(dupLine)).toEqual({ batchable: false, problem: "line 1 repeats the key `body`" });
    expect(repeatedKey(`{"a":{"b":[{"c":1,"c":2}]},"s":"\\"a\\":1,"}`)).toBeNull();
    expect(repeatedKey(`{"a":1,"b":{"x":"}","x":2}}`)).toBe("x");
  });

  it("stops at a huge line without holding it, and at more requests than a batch takes", () => {
    const s = new BatchInputScanner(limitsOf);
    const mb = Buffer.alloc(1024 * 1024, 0x61);
    for (let i = 0; i <= BATCH_LINE_BYTES_MAX / mb.length; i++) s.push(mb);
    s.push(Buffer.from(`\n${line(chat(1))}\n`));
    expect(s.end()).toEqual({ batchable: false, problem: `line 1 is longer than ${BATCH_LINE_BYTES_MAX} bytes` });
    const many = `${line(chat(1))}\n`.repeat(BATCH_REQUESTS_MAX + 1);
    expect(scan(many, 1 << 20)).toEqual({ batchable: false, problem: `the file has more than ${BATCH_REQUESTS_MAX} requests` });
  });
});
