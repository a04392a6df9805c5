/**
 * One HTTP/1.1 GET to the hub over pinned TLS (pinned_tls.ts), `Connection: close`, with a bound on the
 * bytes read: the release fetcher's client. (Deno's fetch cannot pin a key; node:http in Deno does not take a
 * ready-made socket.)
 */
import { concatBytes } from "../../protocol/src/mod.ts";
import { connectPinned } from "./pinned_tls.ts";

/** Bytes of response head read at most. */
const HEAD_BYTES_MAX = 16 * 1024;

export class ResponseTooLarge extends Error {
  constructor(readonly bytesMax: number) {
    super(`the hub's answer is larger than ${bytesMax} bytes`);
    this.name = "ResponseTooLarge";
  }
}

export interface PinnedResponse {
  status: number;
  headers: Map<string, string>;
  body: Uint8Array;
}

function decodeChunked(body: Uint8Array): Uint8Array {
  const out: Uint8Array[] = [];
  let i = 0;
  const text = new TextDecoder("latin1");
  for (;;) {
    let eol = i;
    while (eol + 1 < body.length && !(body[eol] === 13 && body[eol + 1] === 10)) eol++;
    const size = parseInt(text.decode(body.subarray(i, eol)).split(";")[0]!.trim(), 16);
    if (!Number.isFinite(size)) throw new Error("the hub's chunked answer is malformed");
    i = eol + 2;
    if (size === 0) return concatBytes(out);
    out.push(body.subarray(i, i + size));
    i += size + 2;
    if (i > body.length) throw new Error("the hub's chunked answer ended early");
  }
}

/** GETs `path` from `origin`; the body may be at most `bodyBytesMax` bytes, and the whole exchange takes at most `timeoutMs`. */
export async function getPinned(origin: URL, pins: readonly string[], path: string, bodyBytesMax: number, timeoutMs: number): Promise<PinnedResponse> {
  const socket = await connectPinned(origin, pins);
  return await new Promise<PinnedResponse>((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let received = 0;
    const limit = HEAD_BYTES_MAX + bodyBytesMax * 2 + 64;
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new Error(`the hub did not answer ${path} within ${timeoutMs} ms`)), timeoutMs);
    socket.on("data", (c: Uint8Array) => {
      received += c.length;
      if (received > limit) {
        fail(new ResponseTooLarge(bodyBytesMax));
        return;
      }
      chunks.push(c);
    });
    socket.on("error", (e: Error) => fail(new Error(`Cannot reach the hub: ${e.message}`)));
    socket.on("end", () => {
      clearTimeout(timer);
      const all = concatBytes(chunks);
      let split = -1;
      for (let i = 0; i + 3 < all.length && i < HEAD_BYTES_MAX; i++) {
        if (all[i] === 13 && all[i + 1] === 10 && all[i + 2] === 13 && all[i + 3] === 10) {
          split = i;
          break;
        }
      }
      if (split < 0) return reject(new Error("the hub's answer is not HTTP"));
      const head = new TextDecoder("latin1").decode(all.subarray(0, split)).split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? "")?.[1] ?? 0);
      if (!status) return reject(new Error("the hub's answer is not HTTP"));
      const headers = new Map<string, string>();
      for (const line of head.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      let body = all.subarray(split + 4);
      try {
        if (headers.get("transfer-encoding")?.toLowerCase() === "chunked") body = decodeChunked(body);
      } catch (error) {
        return reject(error);
      }
      if (body.length > bodyBytesMax) return reject(new ResponseTooLarge(bodyBytesMax));
      const declared = headers.get("content-length");
      if (declared !== undefined && Number(declared) !== body.length)
        return reject(new Error(`the hub's answer ended after ${body.length} of ${declared} bytes`));
      resolve({ status, headers, body });
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${origin.host}\r\nAccept: */*\r\nConnection: close\r\n\r\n`);
  });
}
