/**
 * Enrollment tokens: an owner gets a one-time token (portal, CLI); the agent makes its Ed25519 key pair
 * locally and registers only the public key with that token, over the pinned TLS listener
 * (`tunnel/enroll.ts`). Only the token's SHA-256 is stored.
 */
import { createHash } from "node:crypto";
import { newId, randomToken, type Db } from "@wellspring/db/core";

export function hashEnrollmentToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/** How long an enrollment token stays valid. */
export const ENROLLMENT_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;
/** A single-use token for one new agent of `ownerId` (who becomes a key owner), valid `ttlMs`; shown once. */
export async function createEnrollmentToken(
  db: Db,
  ownerId: string,
  label?: string,
  ttlMs = ENROLLMENT_TOKEN_TTL_MS,
): Promise<{ id: string; token: string; expiresAt: Date }> {
  const token = `wse_${randomToken(40)}`;
  const id = newId("enr");
  const expiresAt = new Date(Date.now() + ttlMs);
  await db.enrollmentToken.create({ data: { id, ownerId, tokenHash: hashEnrollmentToken(token), label: label ?? null, expiresAt } });
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

/*
 * What a key owner runs, in order, in the agent's folder, as the portal's Agents page and `npm run admin --
 * enroll-token` print it: enroll, write a starter configuration, start. Each step is one shell command.
 */

/** The starter configuration: one OpenAI and one Anthropic model, keys read from environment variables. */
export const STARTER_CONFIG = {
  upstreams: [
    { provider: "openai", apiKeyEnv: "OPENAI_API_KEY", models: ["gpt-4o-mini"] },
    { provider: "anthropic", apiKeyEnv: "ANTHROPIC_API_KEY", models: ["claude-haiku-4-5"] },
  ],
};

export interface EnrollSteps {
  enroll: string;
  configure: string;
  start: string;
}

export function enrollSteps(o: { agentUrl: string; pin: string; token: string; name: string }): EnrollSteps {
  return {
    enroll: enrollCommand(o),
    configure: `cat > data/config.json <<'EOF'\n${JSON.stringify({ name: o.name, ...STARTER_CONFIG }, null, 2)}\nEOF`,
    start: "export OPENAI_API_KEY=sk-…  ANTHROPIC_API_KEY=sk-ant-…   # your keys; only this machine sees them\n./wellspring-agent start",
  };
}
