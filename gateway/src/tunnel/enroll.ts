/**
 * Enrollment: an owner gets a one-time token from the hub (CLI now, the portal later); the agent makes its
 * Ed25519 key pair locally and registers only the public key with that token, over the pinned TLS listener.
 */
import { createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { fromBase64Url } from "@wellspring/protocol";
import { newId, randomToken, type Db } from "@wellspring/db/core";
import { z } from "zod";

/** How long an enrollment token stays valid. */
export const ENROLLMENT_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
/** Largest enrollment request body, bytes. */
const ENROLL_BODY_BYTES_MAX = 8 * 1024;

function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

export async function createEnrollmentToken(db: Db, ownerId: string, label?: string, ttlMs = ENROLLMENT_TOKEN_TTL_MS): Promise<{ id: string; token: string; expiresAt: Date }> {
  const token = `wse_${randomToken(40)}`;
  const id = newId("enr");
  const expiresAt = new Date(Date.now() + ttlMs);
  await db.enrollmentToken.create({ data: { id, ownerId, tokenHash: hashToken(token), label: label ?? null, expiresAt } });
  await db.user.update({ where: { id: ownerId }, data: { isOwner: true } });
  return { id, token, expiresAt };
}

/** Quotes a shell word only when it needs it (single quotes: nothing inside is expanded). */
function shellWord(value: string): string {
  return /^[A-Za-z0-9._:/@=+-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}

/**
 * The one command an owner runs, in the agent's folder, to enroll it (what the portal and `npm run admin --
 * enroll-token` print; docs/operations/agent.md). `agentUrl` is the hub's tunnel origin, `pin` its key's pin.
 */
export function enrollCommand(o: { agentUrl: string; pin: string; token: string; name?: string }): string {
  const name = o.name?.trim();
  return ["./wellspring-agent", "enroll", "--hub", o.agentUrl, "--pin", o.pin, "--token", o.token, ...(name ? ["--name", name] : [])].map(shellWord).join(" ");
}

const enrollBody = z.object({
  token: z.string().min(10).max(100),
  publicKey: z.string().max(64).refine((k) => {
    try {
      return fromBase64Url(k).length === 32;
    } catch {
      return false;
    }
  }, "must be a base64url raw Ed25519 public key"),
  name: z.string().min(1).max(80).default("agent"),
});

export type EnrollResult =
  | { ok: true; agentId: string; hubId: string }
  | { ok: false; status: number; code: string; message: string };

export async function enrollAgent(db: Db, hubId: string, input: unknown): Promise<EnrollResult> {
  const parsed = enrollBody.safeParse(input);
  if (!parsed.success) return { ok: false, status: 400, code: "invalid_request", message: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") };
  const { token, publicKey, name } = parsed.data;
  const agentId = newId("agt");
  try {
    return await db.$transaction(async (tx) => {
      // Conditional update: of two racing enrollments with one token, exactly one wins.
      const claimed = await tx.enrollmentToken.updateMany({
        where: { tokenHash: hashToken(token), usedAt: null, expiresAt: { gt: new Date() } },
        data: { usedAt: new Date() },
      });
      if (claimed.count !== 1) return { ok: false as const, status: 401, code: "invalid_token", message: "Enrollment token is unknown, used or expired." };
      const row = await tx.enrollmentToken.findUniqueOrThrow({ where: { tokenHash: hashToken(token) } });
      const existing = await tx.agent.findUnique({ where: { publicKey } });
      if (existing) throw new Error("duplicate public key");
      await tx.agent.create({ data: { id: agentId, ownerId: row.ownerId, name, publicKey } });
      await tx.enrollmentToken.update({ where: { id: row.id }, data: { agentId } });
      return { ok: true as const, agentId, hubId };
    });
  } catch (error) {
    if ((error as Error).message === "duplicate public key") {
      return { ok: false, status: 409, code: "duplicate_key", message: "This public key is already enrolled." };
    }
    throw error;
  }
}

export async function handleEnroll(req: IncomingMessage, res: ServerResponse, db: Db, hubId: string): Promise<void> {
  const reply = (status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > ENROLL_BODY_BYTES_MAX) {
      reply(413, { error: { code: "body_too_large", message: `Enrollment body over ${ENROLL_BODY_BYTES_MAX} bytes.` } });
      return;
    }
    chunks.push(chunk);
  }
  let input: unknown;
  try {
    input = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    reply(400, { error: { code: "invalid_request", message: "Body is not JSON." } });
    return;
  }
  const result = await enrollAgent(db, hubId, input);
  if (result.ok) reply(201, { agentId: result.agentId, hubId: result.hubId });
  else reply(result.status, { error: { code: result.code, message: result.message } });
}
