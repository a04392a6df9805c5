/**
 * The agent's side of an egress probe (docs/protocol.md, "Egress probes"): the hub sends a nonce; the agent calls
 * the hub's echo endpoint with it through `fetch` — the client its provider calls use, so through the same proxy
 * settings (HTTPS_PROXY …) — and answers with the address the echo saw. TLS to the hub is checked against the
 * hub's own certificate, the one whose key the tunnel pinned (Deno's fetch cannot pin a key itself).
 */
import { Buffer } from "node:buffer";
import { EGRESS_ECHO_PATH, egressEcho, parseJson, type EgressProbeAnswer } from "../../protocol/src/mod.ts";

/** Longest wait for the echo, ms. */
export const EGRESS_ECHO_TIMEOUT_MS = 10_000;
/** An echo answer longer than this (bytes) is refused. */
const ECHO_BYTES_MAX = 1024;

/** PEM text of a DER certificate (what `Deno.createHttpClient({ caCerts })` takes). */
export function pemOf(der: Uint8Array): string {
  const b64 = Buffer.from(der).toString("base64");
  return `-----BEGIN CERTIFICATE-----\n${b64.replace(/(.{64})/g, "$1\n").replace(/\n$/, "")}\n-----END CERTIFICATE-----\n`;
}

/** Calls the echo for `nonce`; the answer to send the hub (address null when the call failed, with why). */
export async function runEgressProbe(hubOrigin: string, hubCertPem: string, nonce: string): Promise<{ answer: EgressProbeAnswer; error: string | null }> {
  const client = Deno.createHttpClient({ caCerts: [hubCertPem] });
  try {
    const res = await fetch(`${hubOrigin}${EGRESS_ECHO_PATH}?nonce=${encodeURIComponent(nonce)}`, {
      client,
      redirect: "manual",
      signal: AbortSignal.timeout(EGRESS_ECHO_TIMEOUT_MS),
    });
    const body = new Uint8Array(await res.arrayBuffer());
    if (res.status !== 200) return { answer: { nonce, address: null }, error: `echo answered ${res.status}` };
    if (body.length > ECHO_BYTES_MAX) return { answer: { nonce, address: null }, error: "echo answer too large" };
    return { answer: { nonce, address: parseJson(egressEcho, body).address }, error: null };
  } catch (error) {
    return { answer: { nonce, address: null }, error: (error as Error).message };
  } finally {
    client.close();
  }
}
