/**
 * Test helpers for the agent's provider client (upstream_http_test.ts, egress_proxy_test.ts): a raw HTTP/1.1
 * server on loopback, one call through a real AgentStream, and self-signed certificates made with openssl.
 */
import assert from "node:assert/strict";
import { decodeFrame, FrameType, SendWindow, WINDOW_BYTES_MAX, type RequestHead } from "../../../protocol/src/mod.ts";
import type { UpstreamPool } from "../upstream_http.ts";
import { AgentStream, type StreamHost, type StreamOutcome } from "../stream.ts";
import type { Log } from "../log.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface Served {
  connections: number;
  requests: string[];
  /** Connections the server saw closed by the client. */
  closedByClient: number;
}

/**
 * A raw HTTP/1.1 server on loopback: `answer` gets each request (head and body as text) and the request's index
 * on its connection, and returns the bytes to write back and what to do with the connection afterwards.
 */
export function rawServer(
  answer: (request: string, n: number, conn: number) => { reply: string | null; then?: "keep" | "close" },
  listener: Deno.Listener = Deno.listen({ hostname: "127.0.0.1", port: 0 }),
): {
  port: number;
  served: Served;
  close(): void;
} {
  const served: Served = { connections: 0, requests: [], closedByClient: 0 };
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      const connIndex = served.connections++;
      conns.add(conn);
      (async () => {
        let text = "";
        let n = 0;
        const buf = new Uint8Array(65536);
        for (;;) {
          let got: number | null;
          try {
            got = await conn.read(buf);
          } catch {
            got = null;
          }
          if (got === null) {
            served.closedByClient++;
            conns.delete(conn);
            try {
              conn.close();
            } catch {
              /* closed */
            }
            return;
          }
          text += dec.decode(buf.subarray(0, got));
          for (;;) {
            const end = text.indexOf("\r\n\r\n");
            if (end < 0) break;
            const length = Number(/content-length: (\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
            if (text.length < end + 4 + length) break;
            const request = text.slice(0, end + 4 + length);
            text = text.slice(end + 4 + length);
            served.requests.push(request);
            const { reply, then } = answer(request, n++, connIndex);
            if (reply !== null) await conn.write(enc.encode(reply));
            if (then === "close") {
              conns.delete(conn);
              conn.close();
              return;
            }
          }
        }
      })();
    }
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    served,
    close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch {
          /* closed */
        }
      }
    },
  };
}

export const quietLog: Log = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Log;

/** Longest a test call may take before it counts as hung, ms. */
const CALL_DEADLINE_MS = 5_000;

export interface CallOptions {
  onStarted?: (s: AgentStream) => void;
  /** The head's `bodyBytes` (default: the body's length). */
  declaredBytes?: number | null;
  /** The agent's own stream window, bytes (default 1 MiB; a body larger than it is streamed to the provider). */
  ownWindowBytes?: number;
  /** The body is sent in DATA frames of at most this many bytes, each when the window has room. */
  pieceBytes?: number;
}

/** Runs one call through an AgentStream against `url`; returns what the hub would have received. */
export async function call(url: string, pool: UpstreamPool, body: string, opts: CallOptions = {}) {
  const frames: { type: number; payload: Uint8Array }[] = [];
  let resetCode: number | null = null;
  let resetReason: string | null = null;
  let outcome: StreamOutcome | null = null;
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  const host: StreamHost = {
    send(frame) {
      const d = decodeFrame(frame);
      if (d.ok) frames.push({ type: d.frame.type, payload: "payload" in d.frame ? d.frame.payload.slice() : new Uint8Array(0) });
      if (d.ok && d.frame.type === FrameType.RESET) {
        resetCode = d.frame.code;
        resetReason = d.frame.reason;
      }
    },
    connectionSendWindow: () => new SendWindow(WINDOW_BYTES_MAX),
    forget() {},
    ended(_s, o) {
      outcome = o;
      done();
    },
    pool,
    log: quietLog,
  };
  const bytes = enc.encode(body);
  const head: RequestHead = {
    requestId: "req_test",
    method: "POST",
    path: "/v1/chat/completions",
    api: "openai",
    model: "gpt-4o-mini",
    headers: [["content-type", "application/json"]],
    bodyBytes: opts.declaredBytes === undefined ? bytes.length : opts.declaredBytes,
  };
  const s = new AgentStream(
    1,
    head,
    { provider: "openai", models: ["gpt-4o-mini"], apiKey: "sk-test" },
    url,
    host,
    WINDOW_BYTES_MAX,
    opts.ownWindowBytes ?? 1 << 20,
  );
  const running = s.run();
  const piece = opts.pieceBytes ?? bytes.length;
  for (let off = 0; off < bytes.length && !s.closed; off += piece) {
    const chunk = bytes.subarray(off, off + piece);
    // As the hub does: a DATA frame only with window for it (the agent gives credit once a write completed).
    while (s.recvWindow.remainingBytes < chunk.length && !s.closed) await new Promise((r) => setTimeout(r, 2));
    if (!s.closed) assert.equal(s.onData(chunk), true);
  }
  if (!s.closed) s.onEnd();
  opts.onStarted?.(s);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the call did not end within ${CALL_DEADLINE_MS} ms`)), CALL_DEADLINE_MS);
  });
  try {
    await Promise.race([Promise.all([running, finished]), deadline]);
  } finally {
    clearTimeout(timer);
  }
  const data = frames.filter((f) => f.type === FrameType.DATA);
  const response = frames.find((f) => f.type === FrameType.RESPONSE);
  return {
    outcome,
    status: response ? (JSON.parse(dec.decode(response.payload)) as { status: number }).status : null,
    body: dec.decode(new Uint8Array(data.flatMap((f) => [...f.payload]))),
    dataFrames: data.length,
    reset: frames.find((f) => f.type === FrameType.RESET) ? true : false,
    resetCode,
    resetReason,
    responseHeaders: response ? (JSON.parse(dec.decode(response.payload)) as { headers: [string, string][] }).headers : null,
  };
}

export const BODY = JSON.stringify({ model: "gpt-4o-mini", messages: [] });

/**
 * A self-signed certificate for `subjectAltName` (`IP:127.0.0.1`, `DNS:api.provider.test`): a CA:FALSE leaf, as
 * rustls wants of a trusted extra root.
 */
export async function selfSigned(subjectAltName: string): Promise<{ cert: string; key: string }> {
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command("openssl", {
      args: [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        `/CN=${subjectAltName.replace(/^[A-Z]+:/, "")}`,
        "-addext",
        `subjectAltName=${subjectAltName}`,
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        `${dir}/key.pem`,
        "-out",
        `${dir}/cert.pem`,
      ],
      stderr: "null",
      stdout: "null",
    }).output();
    assert.ok(out.success, "openssl could not make a test certificate");
    return { cert: await Deno.readTextFile(`${dir}/cert.pem`), key: await Deno.readTextFile(`${dir}/key.pem`) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
