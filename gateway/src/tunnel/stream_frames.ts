/**
 * The response side of the streams a hub end opened: RESPONSE, DATA, END, RESET and WINDOW frames checked and
 * handed to their `HubStream`. One implementation for both ends that open streams at a gateway: an agent's
 * connection (`agent_connection.ts`) and the link to another gateway (`peers/link.ts`).
 */
import { endTrailer, FrameType, parseJson, ResetCode, responseHead, CloseCode, type Frame, type SessionRules } from "@wellspring/protocol";
import type { HubStream } from "./hub_stream.ts";

export interface StreamFrameHost {
  readonly rules: SessionRules;
  send(frame: Uint8Array): void;
  /** The open stream, or undefined for one already closed (ignored, as in HTTP/2); closes the connection for one never opened. */
  streamFor(streamId: number): HubStream | undefined;
  /** Resets a stream at both ends. */
  resetStream(streamId: number, code: number, reason: string): void;
  close(code: number, reason: string): void;
}

/** Handles one frame of a stream's response side; false when the frame is of another type. */
export function onResponseFrame(host: StreamFrameHost, frame: Frame): boolean {
  switch (frame.type) {
    case FrameType.RESPONSE: {
      const stream = host.streamFor(frame.streamId);
      if (!stream) return true;
      if (stream.responseStarted) {
        host.resetStream(frame.streamId, ResetCode.PROTOCOL_ERROR, "second RESPONSE on a stream");
        return true;
      }
      let head;
      try {
        head = parseJson(responseHead, frame.payload);
      } catch (error) {
        host.resetStream(frame.streamId, ResetCode.PROTOCOL_ERROR, `bad response head: ${(error as Error).message}`);
        return true;
      }
      stream.onResponse(head);
      return true;
    }
    case FrameType.DATA: {
      const n = frame.payload.length;
      const verdict = host.rules.data(n);
      if (!verdict.ok) {
        host.close(CloseCode.FLOW_CONTROL_ERROR, verdict.reason);
        return true;
      }
      if (verdict.reply) host.send(verdict.reply);
      const stream = host.streamFor(frame.streamId);
      if (!stream) return true;
      if (!stream.responseStarted || stream.remoteEnded) {
        host.resetStream(frame.streamId, ResetCode.PROTOCOL_ERROR, "DATA outside a response body");
        return true;
      }
      if (!stream.recvWindow.receive(n)) {
        host.resetStream(frame.streamId, ResetCode.FLOW_CONTROL_ERROR, "stream window exceeded");
        return true;
      }
      stream.onData(frame.payload);
      return true;
    }
    case FrameType.END: {
      const stream = host.streamFor(frame.streamId);
      if (!stream) return true;
      if (!stream.responseStarted) {
        host.resetStream(frame.streamId, ResetCode.PROTOCOL_ERROR, "END before RESPONSE");
        return true;
      }
      let trailer = null;
      if (frame.payload.length > 0) {
        try {
          trailer = parseJson(endTrailer, frame.payload);
        } catch {
          trailer = null;
        }
      }
      stream.onEnd(trailer);
      return true;
    }
    case FrameType.RESET:
      host.streamFor(frame.streamId)?.onRemoteReset(frame.code, frame.reason, "agent");
      return true;
    case FrameType.WINDOW: {
      if (frame.streamId === 0) {
        const verdict = host.rules.window(frame.increment);
        if (!verdict.ok) host.close(CloseCode.FLOW_CONTROL_ERROR, verdict.reason);
        return true;
      }
      const stream = host.streamFor(frame.streamId);
      if (stream && !stream.onWindow(frame.increment)) host.resetStream(frame.streamId, ResetCode.FLOW_CONTROL_ERROR, "stream window overflow");
      return true;
    }
    default:
      return false;
  }
}
