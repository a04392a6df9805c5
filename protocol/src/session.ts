/**
 * The connection-level rules both ends of a tunnel apply the same way (docs/protocol.md): the connection's
 * flow-control windows (stream 0), which stream ids a frame may name, and which provider response headers never
 * cross the tunnel. The hub's `AgentConnection` and the agent's `Tunnel` each hold one `SessionRules`.
 * Runtime-neutral.
 */
import { encodeWindow } from "./frame.ts";
import { RecvWindow, SendWindow } from "./flow.ts";

/**
 * Response headers never passed on — by the agent before they enter the tunnel, and by the hub again before
 * they reach the user: hop-by-hop headers, cookies, the key owner's account identifiers, and the provider's
 * edge details.
 */
export const RESPONSE_HEADERS_DROPPED: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "set-cookie",
  "openai-organization",
  "openai-project",
  "anthropic-organization-id",
  "alt-svc",
  "cf-ray",
  "server",
]);

/** What a connection-level rule says of a frame: fine (with a frame to send back, maybe), or the connection is over. */
export type SessionVerdict = { ok: true; reply: Uint8Array | null } | { ok: false; reason: string };

const FINE: SessionVerdict = { ok: true, reply: null };

export class SessionRules {
  /** What this end may still receive on the connection, and gives back as it is received. */
  readonly recv: RecvWindow;
  /** What this end may still send on the connection (granted by the peer). */
  send = new SendWindow(0);
  /** The highest stream id opened so far (the hub opens odd ids, one after another). */
  highestStreamId = 0;

  constructor(ownConnectionWindowBytes: number) {
    this.recv = new RecvWindow(ownConnectionWindowBytes);
  }

  /** The peer's settings arrived: its connection window is what this end may send. */
  peerWindow(connectionWindowBytes: number): void {
    this.send = new SendWindow(connectionWindowBytes);
  }

  /**
   * `n` bytes of DATA arrived. Connection credit goes back on receipt — per-stream windows bound what each
   * stream holds, so one slow consumer stalls only its own stream — as a WINDOW on stream 0 when enough is due.
   */
  data(n: number): SessionVerdict {
    if (!this.recv.receive(n)) return { ok: false, reason: "connection window exceeded" };
    const increment = this.recv.consume(n);
    return increment > 0 ? { ok: true, reply: encodeWindow(0, increment) } : FINE;
  }

  /** A WINDOW on stream 0 arrived. */
  window(increment: number): SessionVerdict {
    return this.send.grant(increment) ? FINE : { ok: false, reason: "connection window overflow" };
  }

  /** The hub opens stream `id`: it must be a new odd id, higher than every id before it. */
  open(id: number): boolean {
    if (id % 2 === 0 || id <= this.highestStreamId) return false;
    this.highestStreamId = id;
    return true;
  }

  /**
   * A frame names stream `id`, which is not open at this end: fine to ignore when it was open once (a frame
   * racing its stream's end, as in HTTP/2); a protocol error when no such stream was ever opened.
   */
  neverOpened(id: number): boolean {
    return id % 2 === 0 || id > this.highestStreamId;
  }

  /** The connection closes: nothing more may be sent. */
  close(): void {
    this.send.close();
  }
}
