/**
 * Several frames per WebSocket message (docs/protocol.md, "Transport"). The frames a peer sends in one turn
 * of its event loop — a request's OPEN, DATA and END; a response's RESPONSE, DATA and END; many streams'
 * chunks at once — leave as one message instead of one message, one TLS record and one write each. Frames
 * keep their order; a message never splits a frame and never exceeds FRAME_BYTES_MAX. Large frames (bulk
 * DATA) go alone, so batching never copies bulk bytes.
 */
import { CloseCode, FRAME_BYTES_MAX, FRAME_HEADER_BYTES } from "./constants.ts";
import { decodeFrame, type DecodeResult, type Violation } from "./frame.ts";

/** Frames at least this large are sent in a message of their own (after whatever was queued before them). */
export const BATCHED_FRAME_BYTES_MAX = 4 * 1024;

export class FrameBatcher {
  #frames: Uint8Array[] = [];
  #bytes = 0;
  #scheduled = false;

  constructor(private readonly sendMessage: (message: Uint8Array) => void) {}

  /** Queues a frame; it leaves with the others of this turn, once the microtasks queued before it ran. */
  push(frame: Uint8Array): void {
    if (frame.length >= BATCHED_FRAME_BYTES_MAX) {
      this.flush();
      this.sendMessage(frame);
      return;
    }
    if (this.#bytes + frame.length > FRAME_BYTES_MAX) this.flush();
    this.#frames.push(frame);
    this.#bytes += frame.length;
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => {
        this.#scheduled = false;
        this.flush();
      });
    }
  }

  /** Sends what is queued now (before a close, so nothing queued is lost or reordered). */
  flush(): void {
    const frames = this.#frames;
    if (frames.length === 0) return;
    this.#frames = [];
    const bytes = this.#bytes;
    this.#bytes = 0;
    if (frames.length === 1) {
      this.sendMessage(frames[0]!);
      return;
    }
    const message = new Uint8Array(bytes);
    let at = 0;
    for (const f of frames) {
      message.set(f, at);
      at += f.length;
    }
    this.sendMessage(message);
  }
}

/**
 * The frames of one message, each a view of it (`decodeFrame` then checks each). A message that ends inside a
 * frame header or payload is a connection error.
 */
export function splitMessage(message: Uint8Array): { ok: true; frames: Uint8Array[] } | { ok: false; violation: Violation } {
  const frames: Uint8Array[] = [];
  const view = new DataView(message.buffer, message.byteOffset, message.byteLength);
  let at = 0;
  while (at < message.length) {
    if (message.length - at < FRAME_HEADER_BYTES) {
      return { ok: false, violation: { scope: "connection", closeCode: CloseCode.PROTOCOL_ERROR, message: "message ends inside a frame header" } };
    }
    const end = at + FRAME_HEADER_BYTES + view.getUint32(at + 8);
    if (end > message.length) {
      return { ok: false, violation: { scope: "connection", closeCode: CloseCode.PROTOCOL_ERROR, message: "message ends inside a frame" } };
    }
    frames.push(message.subarray(at, end));
    at = end;
  }
  if (frames.length === 0) {
    return {
      ok: false,
      violation: { scope: "connection", closeCode: CloseCode.PROTOCOL_ERROR, message: `frame shorter than its ${FRAME_HEADER_BYTES}-byte header` },
    };
  }
  return { ok: true, frames };
}

/** Every frame of a message, decoded (a message that ends inside a frame decodes to one connection violation). */
export function decodeMessage(message: Uint8Array): DecodeResult[] {
  const split = splitMessage(message);
  if (!split.ok) return [{ ok: false, violation: split.violation }];
  return split.frames.map(decodeFrame);
}
