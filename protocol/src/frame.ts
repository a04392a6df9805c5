/**
 * Frame codec. One WebSocket binary message carries one or more whole frames, back to back (batch.ts):
 *
 *   0      1      2      3      4              8              12
 *   +------+------+------+------+--------------+--------------+---------------+
 *   | ver  | type | flags| rsvd | streamId u32 | length u32   | payload ...   |
 *   +------+------+------+------+--------------+--------------+---------------+
 *
 * All integers big-endian. `decodeFrame` is strict: it never throws on hostile input, it returns a
 * violation that says whether to reset one stream or close the whole connection, and with which code.
 */
import {
  CloseCode,
  CONTROL_PAYLOAD_BYTES_MAX,
  DATA_PAYLOAD_BYTES_MAX,
  FRAME_HEADER_BYTES,
  FrameType,
  HEAD_PAYLOAD_BYTES_MAX,
  KNOWN_CONTROL_KINDS,
  PROTOCOL_VERSION,
  REASON_BYTES_MAX,
  ResetCode,
  WINDOW_BYTES_MAX,
} from "./constants.ts";
import { fromUtf8, utf8 } from "./bytes.ts";

export type Frame =
  | { type: typeof FrameType.OPEN; streamId: number; payload: Uint8Array }
  | { type: typeof FrameType.RESPONSE; streamId: number; payload: Uint8Array }
  | { type: typeof FrameType.DATA; streamId: number; payload: Uint8Array }
  | { type: typeof FrameType.END; streamId: number; payload: Uint8Array }
  | { type: typeof FrameType.RESET; streamId: number; code: number; reason: string }
  | { type: typeof FrameType.WINDOW; streamId: number; increment: number }
  | { type: typeof FrameType.PING; streamId: 0; data: Uint8Array }
  | { type: typeof FrameType.PONG; streamId: 0; data: Uint8Array }
  | { type: typeof FrameType.GOAWAY; streamId: 0; lastStreamId: number; code: number; reason: string }
  | { type: typeof FrameType.CONTROL; streamId: 0; kind: number; body: Uint8Array };

/** What to do about a frame that broke the rules. */
export type Violation = { scope: "connection"; closeCode: number; message: string } | { scope: "stream"; streamId: number; resetCode: number; message: string };

export type DecodeResult = { ok: true; frame: Frame } | { ok: false; violation: Violation };

function connectionViolation(closeCode: number, message: string): DecodeResult {
  return { ok: false, violation: { scope: "connection", closeCode, message } };
}
function streamViolation(streamId: number, message: string): DecodeResult {
  return { ok: false, violation: { scope: "stream", streamId, resetCode: ResetCode.PROTOCOL_ERROR, message } };
}

function header(type: number, streamId: number, payloadLength: number): Uint8Array {
  const out = new Uint8Array(FRAME_HEADER_BYTES + payloadLength);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  out[0] = PROTOCOL_VERSION;
  out[1] = type;
  view.setUint32(4, streamId >>> 0);
  view.setUint32(8, payloadLength);
  return out;
}

function withPayload(type: number, streamId: number, payload: Uint8Array): Uint8Array {
  const out = header(type, streamId, payload.length);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

function assertStream(streamId: number): void {
  if (!Number.isInteger(streamId) || streamId <= 0 || streamId > 0xffffffff) {
    throw new RangeError(`stream id out of range: ${streamId}`);
  }
}

function clippedReason(reason: string): Uint8Array {
  let bytes = utf8(reason);
  if (bytes.length <= REASON_BYTES_MAX) return bytes;
  // Cut on a character boundary so the peer's strict UTF-8 decoder accepts it.
  let end = REASON_BYTES_MAX;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  bytes = bytes.subarray(0, end);
  return bytes;
}

export function encodeOpen(streamId: number, head: Uint8Array): Uint8Array {
  assertStream(streamId);
  if (head.length > HEAD_PAYLOAD_BYTES_MAX) throw new RangeError("request head too large");
  return withPayload(FrameType.OPEN, streamId, head);
}

export function encodeResponse(streamId: number, head: Uint8Array): Uint8Array {
  assertStream(streamId);
  if (head.length > HEAD_PAYLOAD_BYTES_MAX) throw new RangeError("response head too large");
  return withPayload(FrameType.RESPONSE, streamId, head);
}

export function encodeData(streamId: number, chunk: Uint8Array): Uint8Array {
  assertStream(streamId);
  if (chunk.length > DATA_PAYLOAD_BYTES_MAX) throw new RangeError("DATA payload too large; split it first");
  return withPayload(FrameType.DATA, streamId, chunk);
}

export function encodeEnd(streamId: number, trailer: Uint8Array = new Uint8Array(0)): Uint8Array {
  assertStream(streamId);
  if (trailer.length > HEAD_PAYLOAD_BYTES_MAX) throw new RangeError("trailer too large");
  return withPayload(FrameType.END, streamId, trailer);
}

export function encodeReset(streamId: number, code: number, reason = ""): Uint8Array {
  assertStream(streamId);
  const r = clippedReason(reason);
  const out = header(FrameType.RESET, streamId, 4 + r.length);
  new DataView(out.buffer).setUint32(FRAME_HEADER_BYTES, code >>> 0);
  out.set(r, FRAME_HEADER_BYTES + 4);
  return out;
}

export function encodeWindow(streamId: number, increment: number): Uint8Array {
  if (!Number.isInteger(increment) || increment < 1 || increment > WINDOW_BYTES_MAX) {
    throw new RangeError(`window increment out of range: ${increment}`);
  }
  const out = header(FrameType.WINDOW, streamId, 4);
  new DataView(out.buffer).setUint32(FRAME_HEADER_BYTES, increment);
  return out;
}

export function encodePing(data: Uint8Array): Uint8Array {
  if (data.length !== 8) throw new RangeError("PING carries exactly 8 bytes");
  return withPayload(FrameType.PING, 0, data);
}

export function encodePong(data: Uint8Array): Uint8Array {
  if (data.length !== 8) throw new RangeError("PONG carries exactly 8 bytes");
  return withPayload(FrameType.PONG, 0, data);
}

export function encodeGoAway(lastStreamId: number, code: number, reason = ""): Uint8Array {
  const r = clippedReason(reason);
  const out = header(FrameType.GOAWAY, 0, 8 + r.length);
  const view = new DataView(out.buffer);
  view.setUint32(FRAME_HEADER_BYTES, lastStreamId >>> 0);
  view.setUint32(FRAME_HEADER_BYTES + 4, code >>> 0);
  out.set(r, FRAME_HEADER_BYTES + 8);
  return out;
}

export function encodeControl(kind: number, body: Uint8Array): Uint8Array {
  if (!KNOWN_CONTROL_KINDS.has(kind)) throw new RangeError(`unknown control kind ${kind}`);
  if (body.length > CONTROL_PAYLOAD_BYTES_MAX - 2) throw new RangeError("control body too large");
  const out = header(FrameType.CONTROL, 0, 2 + body.length);
  new DataView(out.buffer).setUint16(FRAME_HEADER_BYTES, kind);
  out.set(body, FRAME_HEADER_BYTES + 2);
  return out;
}

const STREAM_FRAMES: ReadonlySet<number> = new Set([FrameType.OPEN, FrameType.RESPONSE, FrameType.DATA, FrameType.END, FrameType.RESET]);
const CONNECTION_FRAMES: ReadonlySet<number> = new Set([FrameType.PING, FrameType.PONG, FrameType.GOAWAY, FrameType.CONTROL]);

function decodeReason(bytes: Uint8Array): string | null {
  if (bytes.length > REASON_BYTES_MAX) return null;
  try {
    return fromUtf8(bytes);
  } catch {
    return null;
  }
}

/** Decodes one frame. Never throws; hostile input yields a violation. The payload views `bytes`. */
export function decodeFrame(bytes: Uint8Array): DecodeResult {
  if (bytes.length < FRAME_HEADER_BYTES) {
    return connectionViolation(CloseCode.PROTOCOL_ERROR, `frame shorter than its ${FRAME_HEADER_BYTES}-byte header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = bytes[0]!;
  const type = bytes[1]!;
  const flags = bytes[2]!;
  const reserved = bytes[3]!;
  const streamId = view.getUint32(4);
  const length = view.getUint32(8);
  if (version !== PROTOCOL_VERSION) {
    return connectionViolation(CloseCode.UNSUPPORTED_VERSION, `unsupported protocol version ${version}`);
  }
  if (length !== bytes.length - FRAME_HEADER_BYTES) {
    return connectionViolation(CloseCode.PROTOCOL_ERROR, "frame length does not match message length");
  }
  if (flags !== 0 || reserved !== 0) {
    return connectionViolation(CloseCode.PROTOCOL_ERROR, "frame flags and reserved byte must be zero");
  }
  const payload = bytes.subarray(FRAME_HEADER_BYTES);
  if (STREAM_FRAMES.has(type) && streamId === 0) {
    return connectionViolation(CloseCode.PROTOCOL_ERROR, `frame type ${type} needs a stream id`);
  }
  if (CONNECTION_FRAMES.has(type) && streamId !== 0) {
    return connectionViolation(CloseCode.PROTOCOL_ERROR, `frame type ${type} must be on stream 0`);
  }
  switch (type) {
    case FrameType.OPEN:
    case FrameType.RESPONSE:
    case FrameType.END:
      if (payload.length > HEAD_PAYLOAD_BYTES_MAX) return streamViolation(streamId, "head or trailer too large");
      return { ok: true, frame: { type, streamId, payload } };
    case FrameType.DATA:
      if (payload.length > DATA_PAYLOAD_BYTES_MAX) {
        return connectionViolation(CloseCode.FRAME_TOO_LARGE, `DATA payload over ${DATA_PAYLOAD_BYTES_MAX} bytes`);
      }
      return { ok: true, frame: { type, streamId, payload } };
    case FrameType.RESET: {
      if (payload.length < 4) return streamViolation(streamId, "RESET needs a 4-byte code");
      const reason = decodeReason(payload.subarray(4));
      if (reason === null) return streamViolation(streamId, "RESET reason is not short valid UTF-8");
      return { ok: true, frame: { type, streamId, code: view.getUint32(FRAME_HEADER_BYTES), reason } };
    }
    case FrameType.WINDOW: {
      if (payload.length !== 4) return connectionViolation(CloseCode.PROTOCOL_ERROR, "WINDOW carries exactly 4 bytes");
      const increment = view.getUint32(FRAME_HEADER_BYTES);
      if (increment < 1 || increment > WINDOW_BYTES_MAX) {
        return connectionViolation(CloseCode.FLOW_CONTROL_ERROR, `window increment ${increment} out of range`);
      }
      return { ok: true, frame: { type, streamId, increment } };
    }
    case FrameType.PING:
    case FrameType.PONG:
      if (payload.length !== 8) return connectionViolation(CloseCode.PROTOCOL_ERROR, "PING/PONG carry exactly 8 bytes");
      return { ok: true, frame: { type, streamId: 0, data: payload } };
    case FrameType.GOAWAY: {
      if (payload.length < 8) return connectionViolation(CloseCode.PROTOCOL_ERROR, "GOAWAY needs 8 bytes");
      const reason = decodeReason(payload.subarray(8));
      if (reason === null) return connectionViolation(CloseCode.PROTOCOL_ERROR, "GOAWAY reason is not short valid UTF-8");
      return {
        ok: true,
        frame: {
          type,
          streamId: 0,
          lastStreamId: view.getUint32(FRAME_HEADER_BYTES),
          code: view.getUint32(FRAME_HEADER_BYTES + 4),
          reason,
        },
      };
    }
    case FrameType.CONTROL: {
      if (payload.length < 2) return connectionViolation(CloseCode.PROTOCOL_ERROR, "CONTROL needs a 2-byte kind");
      if (payload.length > CONTROL_PAYLOAD_BYTES_MAX) {
        return connectionViolation(CloseCode.FRAME_TOO_LARGE, "CONTROL payload too large");
      }
      const kind = view.getUint16(FRAME_HEADER_BYTES);
      if (!KNOWN_CONTROL_KINDS.has(kind)) {
        return connectionViolation(CloseCode.UNKNOWN_CONTROL_KIND, `unknown control kind ${kind}`);
      }
      return { ok: true, frame: { type, streamId: 0, kind, body: payload.subarray(2) } };
    }
    default:
      return connectionViolation(CloseCode.UNKNOWN_FRAME_TYPE, `unknown frame type ${type}`);
  }
}
