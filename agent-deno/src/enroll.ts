/**
 * Enrollment: make the Ed25519 key pair here, keep the private key in `<data>/agent-key.pk8` (mode 0600),
 * and register only the public key with the hub's one-time token, over pinned TLS.
 */
import { concatBytes as concat, generateAgentKeyPair } from "../../protocol/src/mod.ts";
import type { Identity } from "./config.ts";
import { parseHubUrl } from "./hub_url.ts";
import { connectPinned, isPin } from "./pinned_tls.ts";

export const ENROLL_PATH = "/agent/v1/enroll";

export interface EnrollOptions {
  hubUrl: string;
  pins: string[];
  token: string;
  name: string;
  dataDir: string;
}

/**
 * One HTTP/1.1 request over the pinned TLS socket, `Connection: close`, read to the end. (Deno's node:http
 * does not accept a ready-made socket, and fetch cannot pin, so this tiny client does the one call we need.)
 */
function post(origin: URL, pins: string[], path: string, body: string, timeoutMs = 15_000): Promise<{ status: number; body: string }> {
  return connectPinned(origin, pins).then(
    (socket) =>
      new Promise((resolve, reject) => {
        const payload = new TextEncoder().encode(body);
        const head = `POST ${path} HTTP/1.1\r\nHost: ${origin.host}\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\nConnection: close\r\n\r\n`;
        const chunks: Uint8Array[] = [];
        const timer = setTimeout(() => {
          socket.destroy();
          reject(new Error(`Cannot enroll: the hub did not answer within ${timeoutMs} ms`));
        }, timeoutMs);
        socket.on("data", (c: Uint8Array) => chunks.push(c));
        socket.on("error", (e: Error) => {
          clearTimeout(timer);
          reject(new Error(`Cannot enroll: ${e.message}`));
        });
        socket.on("end", () => {
          clearTimeout(timer);
          const text = new TextDecoder().decode(concat(chunks));
          const split = text.indexOf("\r\n\r\n");
          const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
          if (split < 0 || !status) {
            reject(new Error("Cannot enroll: the hub's answer is not HTTP"));
            return;
          }
          resolve({ status, body: text.slice(split + 4) });
        });
        socket.write(head);
        socket.write(payload);
      }),
  );
}

export async function enroll(o: EnrollOptions): Promise<Identity> {
  // The stored origin becomes the serving agent's network permission: exactly one https host, nothing else.
  const origin = new URL(parseHubUrl(o.hubUrl));
  if (!o.pins.every(isPin)) throw new Error("Cannot enroll: --pin must look like sha256/<base64>");
  try {
    await Deno.stat(`${o.dataDir}/agent.json`);
    throw new Error(`Cannot enroll: ${o.dataDir}/agent.json exists; this agent is already enrolled`);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  await Deno.mkdir(o.dataDir, { recursive: true, mode: 0o700 });
  const { pair, privatePkcs8 } = await generateAgentKeyPair();
  const res = await post(origin, o.pins, ENROLL_PATH, JSON.stringify({ token: o.token, publicKey: pair.publicKey, name: o.name }));
  if (res.status !== 201) {
    let message = res.body;
    try {
      message = (JSON.parse(res.body) as { error?: { message?: string } }).error?.message ?? res.body;
    } catch {
      /* not JSON */
    }
    throw new Error(`Cannot enroll: hub answered ${res.status}: ${message}`);
  }
  const { agentId, hubId } = JSON.parse(res.body) as { agentId: string; hubId: string };
  await Deno.writeFile(`${o.dataDir}/agent-key.pk8`, privatePkcs8, { mode: 0o600 });
  await Deno.chmod(`${o.dataDir}/agent-key.pk8`, 0o600);
  const identity: Identity = { agentId, hubId, hubUrl: origin.origin, pins: o.pins };
  await Deno.writeTextFile(`${o.dataDir}/agent.json`, JSON.stringify({ ...identity, publicKey: pair.publicKey }, null, 2) + "\n", { mode: 0o600 });
  return identity;
}
