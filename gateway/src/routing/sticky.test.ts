/** Reading a created response's id from the head of the answer, as the bytes pass. */
import { describe, expect, it } from "vitest";
import { RESPONSE_ID_SCAN_BYTES_MAX, ResponseIdTap } from "./sticky.ts";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("ResponseIdTap", () => {
  it("finds the id of a JSON answer split across chunks", () => {
    const tap = new ResponseIdTap();
    expect(tap.push(bytes('{"id":"resp_ab'))).toBeNull();
    expect(tap.push(bytes('c123","object":"response"}'))).toBe("resp_abc123");
  });

  it("finds the id in the first event of a stream, not an item id", () => {
    const tap = new ResponseIdTap();
    const sse = 'event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{"id":"resp_s1","object":"response"}}\n\n';
    expect(tap.push(bytes(sse))).toBe("resp_s1");
  });

  it("gives up after its byte bound", () => {
    const tap = new ResponseIdTap();
    expect(tap.push(bytes(" ".repeat(RESPONSE_ID_SCAN_BYTES_MAX)))).toBeNull();
    expect(tap.push(bytes('{"id":"resp_late"}'))).toBeNull();
  });
});
