/**
 * The agent's side of an egress probe (docs/protocol.md, "Egress probes"): the hub sends a nonce; the agent calls
 * the hub's echo endpoint with it through the connect function its provider calls use (upstream_http.ts
 * `originConnector`: the same HTTPS_PROXY / NO_PROXY decision, the same CONNECT), and answers with the address
 * the echo saw — so what it reports is where provider calls leave from. TLS to the hub trusts only the hub's own
 * certificate, the one whose key the tunnel pinned (the probe's `caCerts`).
 */
import { Buffer } from "node:buffer";
import { EGRESS_ECHO_PATH, egressEcho, parseJson, type EgressProbeAnswer } from "../../protocol/src/mod.ts";
import { processProxy } from "./egress_proxy.ts";
import { type Connect, originConnector, ResponseParser, splitUrl } from "./upstream_http.ts";
import { AGENT_VERSION } from "./version.ts";

/** Longest wait for the echo (connection, proxy, TLS and answer), ms. */
export const EGRESS_ECHO_TIMEOUT_MS = 10_000;
/** An echo answer body longer than this (bytes) is refused. */
const ECHO_BYTES_MAX = 1024;

/** PEM text of a DER certificate (what `caCerts` takes). */
export function pemOf(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, "$1\n").replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;
}

/**
 * Calls the echo for `nonce`; the answer to send the hub (address null when the call failed, with why).
 * `connect` defaults to this process's proxy settings with the hub's certificate as the only trust root.
 */
export async function runEgressProbe(
  hubOrigin: string,
  hubCertPem: string,
  nonce: string,
  connect?: Connect,
  timeoutMs: number = EGRESS_ECHO_TIMEOUT_MS,
): Promise<{ answer: EgressProbeAnswer; error: string | null }> {
  const failed = (error: string) => ({ answer: { nonce, address: null }, error });
  let conn: Deno.Conn | null = null;
  let expired = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  // At the deadline the connection closes (a read or write under way fails) and a connect still under way is given up.
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      closeQuietly(conn);
      reject(new Error("expired"));
    }, timeoutMs);
  });
  deadline.catch(() => {});
  try {
    const { origin, target } = splitUrl(`${hubOrigin}${EGRESS_ECHO_PATH}?nonce=${encodeURIComponent(nonce)}`);
    const connecting = (connect ?? originConnector({ proxy: processProxy(), caCerts: [hubCertPem] }))(origin);
    connecting.then(
      (c) => expired && closeQuietly(c),
      () => {},
    );
    conn = await Promise.race([connecting, deadline]);
    const head = `GET ${target} HTTP/1.1\r\nhost: ${origin.host}\r\naccept: application/json\r\nuser-agent: wellspring-agent/${AGENT_VERSION}\r\nconnection: close\r\n\r\n`;
    const bytes = new TextEncoder().encode(head);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    const parser = new ResponseParser("GET");
    const buf = new Uint8Array(4096);
    const body: number[] = [];
    while (!parser.done) {
      const n = await conn.read(buf);
      if (n === null) {
        parser.eof();
        break;
      }
      for (const b of parser.feed(buf.subarray(0, n))) body.push(b);
      if (body.length > ECHO_BYTES_MAX) return failed("echo answer too large");
    }
    const status = parser.head!.status;
    if (status !== 200) return failed(`echo answered ${status}`);
    return { answer: { nonce, address: parseJson(egressEcho, new Uint8Array(body)).address }, error: null };
  } catch (error) {
    return failed(expired ? `no echo answer within ${timeoutMs} ms` : (error as Error).message);
  } finally {
    clearTimeout(timer);
    closeQuietly(conn);
  }
}

function closeQuietly(conn: Deno.Conn | null): void {
  try {
    conn?.close();
  } catch {
    // already closed
  }
}
