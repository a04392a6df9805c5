// The part of npm:ws the agent uses, typed here so type checking needs no @types packages.
import type { Socket } from "node:net";

export default class WebSocket {
  static readonly OPEN: 1;
  readonly readyState: number;
  binaryType: string;
  constructor(
    url: string,
    options: {
      createConnection?: () => Socket;
      maxPayload?: number;
      perMessageDeflate?: boolean;
      handshakeTimeout?: number;
      generateMask?: (mask: Uint8Array) => void;
    },
  );
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(event: "message", listener: (data: Uint8Array, isBinary: boolean) => void): this;
  on(event: "close", listener: (code: number, reason: Uint8Array) => void): this;
  on(event: "error", listener: (error: Error) => void): this;
}
