/**
 * The tunnel listener's TLS identity. Agents pin its public key (SPKI SHA-256, `sha256/<base64>`), so the
 * pin survives certificate renewal as long as the key is kept; rotate keys with a backup pin.
 */
import { createHash, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { TLSSocket } from "node:tls";

const run = promisify(execFile);

/** `sha256/<base64 of SHA-256(SubjectPublicKeyInfo DER)>` of a PEM certificate. */
export function spkiPin(certPem: string | Buffer): string {
  return pinOf(new X509Certificate(certPem));
}

function pinOf(cert: X509Certificate): string {
  const spki = cert.publicKey.export({ type: "spki", format: "der" });
  return `sha256/${createHash("sha256").update(spki).digest("base64")}`;
}

/** The pin of the key a TLS peer presented ("" when it presented none). */
export function pinOfSocket(socket: TLSSocket): string {
  const cert = socket.getPeerX509Certificate();
  return cert ? pinOf(cert) : "";
}

export interface TlsIdentity {
  cert: Buffer;
  key: Buffer;
  pin: string;
}

/** Generates a self-signed P-256 leaf certificate (CA:FALSE) with `openssl`. */
export async function generateSelfSigned(dir: string, hosts: string[] = ["localhost", "127.0.0.1"]): Promise<TlsIdentity> {
  await mkdir(dir, { recursive: true });
  const keyPath = join(dir, "tunnel-key.pem");
  const certPath = join(dir, "tunnel-cert.pem");
  const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(",");
  try {
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      keyPath,
      "-out",
      certPath,
      "-days",
      "825",
      "-subj",
      "/CN=wellspring-hub",
      "-addext",
      `subjectAltName=${san}`,
      "-addext",
      "basicConstraints=critical,CA:FALSE",
    ]);
  } catch (error) {
    throw new Error(`Cannot create the tunnel TLS certificate: openssl failed (${(error as Error).message}). Set TLS_CERT_FILE and TLS_KEY_FILE instead.`);
  }
  return loadTlsIdentity(certPath, keyPath);
}

export async function loadTlsIdentity(certPath: string, keyPath: string): Promise<TlsIdentity> {
  const [cert, key] = await Promise.all([readFile(certPath), readFile(keyPath)]);
  return { cert, key, pin: spkiPin(cert) };
}

/** The configured certificate, or one generated once into `dir` and reused on later starts. */
export async function ensureTlsIdentity(opts: { certFile?: string; keyFile?: string; dir: string }): Promise<TlsIdentity> {
  if (opts.certFile && opts.keyFile) return loadTlsIdentity(opts.certFile, opts.keyFile);
  const certPath = join(opts.dir, "tunnel-cert.pem");
  const keyPath = join(opts.dir, "tunnel-key.pem");
  if (existsSync(certPath) && existsSync(keyPath)) return loadTlsIdentity(certPath, keyPath);
  return generateSelfSigned(opts.dir);
}
