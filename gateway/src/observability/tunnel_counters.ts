/**
 * Tunnel frame and byte counts for this process, bumped once per frame where frames are sent and decoded
 * (an array increment: no allocation, no label lookup on the data path) and turned into Prometheus counters
 * at scrape time (metrics.ts).
 */
import { FrameType } from "@wellspring/protocol";

/** Frame type names by type code (docs/protocol.md). */
export const TUNNEL_FRAME_TYPE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(FrameType).map(([name, code]) => [code, name]));

const TYPE_SLOTS = 16;

export const tunnelCounters = {
  /** Frames received from agents, by frame type code. */
  framesIn: new Float64Array(TYPE_SLOTS),
  /** Frames sent to agents, by frame type code. */
  framesOut: new Float64Array(TYPE_SLOTS),
  bytesIn: 0,
  bytesOut: 0,
};

/** One WebSocket message of `bytes` (one or more whole frames) received from an agent. */
export function countMessageIn(bytes: number): void {
  tunnelCounters.bytesIn += bytes;
}

/** One frame of `type` decoded from an agent's message. */
export function countFrameIn(type: number): void {
  tunnelCounters.framesIn[type & (TYPE_SLOTS - 1)]!++;
}

/** One encoded frame sent to an agent: its type is byte 1 of the header. */
export function countFrameOut(frame: Uint8Array): void {
  tunnelCounters.framesOut[frame[1]! & (TYPE_SLOTS - 1)]!++;
  tunnelCounters.bytesOut += frame.length;
}
