import { describe, expect, it } from "vitest";
import { DATA_PAYLOAD_BYTES_MAX, decodeFrame, FrameType, SendWindow, sendNow } from "../src/mod.ts";

describe("sendNow", () => {
  it("sends all of the bytes at once when both windows have credit, split into frames of at most the payload limit", () => {
    const frames: Uint8Array[] = [];
    const windows = { stream: new SendWindow(DATA_PAYLOAD_BYTES_MAX * 3), connection: new SendWindow(DATA_PAYLOAD_BYTES_MAX * 3) };
    const bytes = new Uint8Array(DATA_PAYLOAD_BYTES_MAX * 2 + 5).map((_, i) => i % 251);
    expect(sendNow(7, bytes, windows, (f) => frames.push(f))).toBe(true);
    const payloads = frames.map((f) => {
      const d = decodeFrame(f);
      if (!d.ok || d.frame.type !== FrameType.DATA) throw new Error("not a DATA frame");
      return d.frame.payload;
    });
    expect(payloads.map((p) => p.length)).toEqual([DATA_PAYLOAD_BYTES_MAX, DATA_PAYLOAD_BYTES_MAX, 5]);
    expect(Buffer.concat(payloads).equals(Buffer.from(bytes))).toBe(true);
    expect(windows.stream.availableBytes).toBe(DATA_PAYLOAD_BYTES_MAX - 5);
    expect(windows.connection.availableBytes).toBe(DATA_PAYLOAD_BYTES_MAX - 5);
  });

  it("sends nothing and takes no credit when either window is short of all of it", () => {
    const frames: Uint8Array[] = [];
    for (const [s, c] of [
      [99, 1000],
      [1000, 99],
    ] as const) {
      const windows = { stream: new SendWindow(s), connection: new SendWindow(c) };
      expect(sendNow(1, new Uint8Array(100), windows, (f) => frames.push(f))).toBe(false);
      expect([windows.stream.availableBytes, windows.connection.availableBytes]).toEqual([s, c]);
    }
    expect(frames).toEqual([]);
  });
});
