/**
 * Enrollment on the agent listener: the agent registers its Ed25519 public key (made on the owner's machine)
 * with a one-time token the owner got from the portal or the CLI (`ops/enrollment.ts`), over pinned TLS.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { fromBase64Url } from "@wellspring/protocol";
import { newId, type Db } from "@wellspring/db/core";
import { z } from "zod";
import { hashEnrollmentToken } from "../ops/enrollment.ts";

/** Largest enrollment request body, bytes. */
const ENROLL_BODY_BYTES_MAX = 8 * 1024;

const enrollBody = z.object({
  token: z.string().min(10).max(100),
  publicKey: z
    .string()
    .max(64)
    .refine((k) => {
      try {
        return fromBase64Url(k).length === 32;
      } catch {
        return false;
      }
    }, "must be a base64url raw Ed25519 public key"),
  name: z.string().min(1).max(80).default("agent"),
});

export type EnrollResult = { ok: true; agentId: string; hubId: string } | { ok: false; status: number; code: string; message: string };

export async function enrollAgent(db: Db, hubId: string, input: unknown): Promise<EnrollResult> {
  const parsed = enrollBody.safeParse(input);
  if (!parsed.success)
    return { ok: false, status: 400, code: "invalid_request", message: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") };
  const { token, publicKey, name } = parsed.data;
  const agentId = newId("agt");
  try {
    return await db.$transaction(async (tx) => {
      // Conditional update: of two racing enrollments with one token, exactly one wins.
      const claimed = await tx.enrollmentToken.updateMany({
        where: { tokenHash: hashEnrollmentToken(token), usedAt: null, expiresAt: { gt: new Date() } },
        data: { usedAt: new Date() },
      });
      if (claimed.count !== 1) return { ok: false as const, status: 401, code: "invalid_token", message: "Enrollment token is unknown, used or expired." };
      const row = await tx.enrollmentToken.findUniqueOrThrow({ where: { tokenHash: hashEnrollmentToken(token) } });
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
