import { describe, expect, it } from "vitest";
import { DATA_PAYLOAD_BYTES_MAX, decodeFrame, FrameType, RecvWindow, SendWindow, sendNow, WindowGrowth } from "../src/mod.ts";

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

describe("RecvWindow growth", () => {
  const KiB = 1024;
  /** A growth budget on a clock the test moves. */
  const clocked = (budgetBytes: number, fastMs = 50, streamMaxBytes = 1024 * KiB) => {
    const clock = { now: 0 };
    return { clock, growth: new WindowGrowth(budgetBytes, () => clock.now, fastMs, streamMaxBytes) };
  };
  /** Receives and consumes `bytes` at once (a reader that keeps up); the increment granted back. */
  const pass = (w: RecvWindow, bytes: number) => {
    expect(w.receive(bytes)).toBe(true);
    return w.consume(bytes);
  };

  it("doubles the window of a stream whose reader took half of it within the fast interval, up to the stream maximum", () => {
    const { clock, growth } = clocked(10_000 * KiB);
    const w = new RecvWindow(256 * KiB, growth);
    clock.now = 10;
    expect(pass(w, 128 * KiB)).toBe(128 * KiB + 256 * KiB);
    expect(w.sizeBytes).toBe(512 * KiB);
    expect(w.remainingBytes).toBe(512 * KiB);
    clock.now = 20;
    expect(pass(w, 256 * KiB)).toBe(256 * KiB + 512 * KiB);
    expect(w.sizeBytes).toBe(1024 * KiB);
    clock.now = 30;
    expect(pass(w, 512 * KiB)).toBe(512 * KiB);
    expect(w.sizeBytes).toBe(1024 * KiB);
    expect(growth.availableBytes).toBe(10_000 * KiB - 768 * KiB);
  });

  it("never grows for a reader slower than the fast interval, and grants back only what it took", () => {
    const { clock, growth } = clocked(10_000 * KiB);
    const w = new RecvWindow(256 * KiB, growth);
    for (let i = 1; i <= 5; i++) {
      clock.now = i * 60;
      expect(pass(w, 128 * KiB)).toBe(128 * KiB);
    }
    expect(w.sizeBytes).toBe(256 * KiB);
    expect(growth.availableBytes).toBe(10_000 * KiB);
  });

  it("grows only as far as the connection's budget allows, and a closed stream gives its growth back", () => {
    const { clock, growth } = clocked(300 * KiB);
    const a = new RecvWindow(256 * KiB, growth);
    const b = new RecvWindow(256 * KiB, growth);
    clock.now = 1;
    expect(pass(a, 128 * KiB)).toBe(128 * KiB + 256 * KiB);
    expect(pass(b, 128 * KiB)).toBe(128 * KiB + 44 * KiB);
    expect(growth.availableBytes).toBe(0);
    clock.now = 2;
    const c = new RecvWindow(256 * KiB, growth);
    expect(pass(c, 128 * KiB)).toBe(128 * KiB);
    a.release();
    a.release();
    expect(growth.availableBytes).toBe(256 * KiB);
  });

  it("holds the peer to the grown window: more than it was granted is refused", () => {
    const { clock, growth } = clocked(10_000 * KiB);
    const w = new RecvWindow(256 * KiB, growth);
    clock.now = 1;
    expect(pass(w, 128 * KiB)).toBe(384 * KiB);
    expect(w.receive(512 * KiB)).toBe(true);
    expect(w.receive(1)).toBe(false);
  });

  it("without a growth budget the window keeps its size whatever the pace", () => {
    const w = new RecvWindow(256 * KiB);
    for (let i = 0; i < 4; i++) expect(pass(w, 128 * KiB)).toBe(128 * KiB);
    expect(w.sizeBytes).toBe(256 * KiB);
  });
});
