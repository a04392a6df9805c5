/**
 * Operator commands (the portal adds pages for these later):
 *   npm run admin -- create-user --email a@b.c [--admin] [--owner]
 *   npm run admin -- create-key --email a@b.c [--name N] [--models m1,m2]
 *   npm run admin -- enroll-token --email owner@b.c [--label L]
 *   npm run admin -- agents
 *   npm run admin -- revoke-agent --id agt_…
 * DATABASE_URL selects the database; without it, the embedded one in DATA_DIR (default .data) is used.
 */
import { newId, type Db } from "@wellspring/db";
import { parseEnv } from "../env.ts";
import { bootHub } from "../hub.ts";
import { createLogger } from "../log.ts";
import { issueKey } from "../api/keys.ts";
import { createEnrollmentToken } from "../tunnel/enroll.ts";

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
}

async function userByEmail(db: Db, email: string | undefined) {
  if (!email) throw new Error("--email is required");
  const user = await db.user.findUnique({ where: { email: email.toLowerCase() } });
  if (!user) throw new Error(`Cannot find a user with email ${email}`);
  return user;
}

export async function runAdmin(db: Db, args: string[], hub: { pin: string; agentOrigin: string }): Promise<string> {
  const [command] = args;
  switch (command) {
    case "create-user": {
      const email = flag(args, "email")?.toLowerCase();
      if (!email || !/^[^@\s]+@[^@\s]+$/.test(email)) throw new Error("--email must be an email address");
      const user = await db.user.upsert({
        where: { email },
        create: { id: newId("usr"), email, isAdmin: args.includes("--admin"), isOwner: args.includes("--owner") },
        update: { isAdmin: args.includes("--admin") || undefined, isOwner: args.includes("--owner") || undefined },
      });
      return `user ${user.id} ${user.email}${user.isAdmin ? " admin" : ""}${user.isOwner ? " owner" : ""}`;
    }
    case "create-key": {
      const user = await userByEmail(db, flag(args, "email"));
      const models = flag(args, "models")?.split(",").filter(Boolean) ?? [];
      const key = await issueKey(db, user.id, flag(args, "name") ?? "default", { allowedModels: models });
      return `key ${key.id} (shown once, store it now):\n${key.secret}`;
    }
    case "enroll-token": {
      const user = await userByEmail(db, flag(args, "email"));
      const t = await createEnrollmentToken(db, user.id, flag(args, "label"));
      return [
        `enrollment token ${t.id}, valid until ${t.expiresAt.toISOString()} (UTC), single use:`,
        t.token,
        "",
        "On the key owner's machine, in agent-deno/:",
        `  deno task enroll --hub ${hub.agentOrigin} --pin ${hub.pin} --token ${t.token}`,
      ].join("\n");
    }
    case "agents": {
      const agents = await db.agent.findMany({ orderBy: { createdAt: "asc" }, include: { owner: { select: { email: true } } } });
      if (agents.length === 0) return "no agents enrolled";
      return agents.map((a) => `${a.id} ${a.status} tier=${a.tier} owner=${a.owner.email} version=${a.version ?? "-"} lastSeen=${a.lastSeenAt?.toISOString() ?? "never"} models=${a.models.join(",")}`).join("\n");
    }
    case "revoke-agent": {
      const id = flag(args, "id");
      if (!id) throw new Error("--id is required");
      await db.agent.update({ where: { id }, data: { status: "revoked", revokedAt: new Date() } });
      return `agent ${id} revoked; its next handshake is refused`;
    }
    default:
      throw new Error("usage: admin create-user|create-key|enroll-token|agents|revoke-agent (see gateway/src/cli/admin.ts)");
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const env = parseEnv();
  const log = createLogger({ proc: "admin" }, "warn");
  const hub = await bootHub({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR, hubId: env.HUB_ID, tlsCertFile: env.TLS_CERT_FILE, tlsKeyFile: env.TLS_KEY_FILE, log });
  let code = 0;
  try {
    console.log(await runAdmin(hub.db, process.argv.slice(2), { pin: hub.tls.pin, agentOrigin: `https://${env.HOST}:${env.AGENT_PORT}` }));
  } catch (error) {
    console.error((error as Error).message);
    code = 1;
  }
  await hub.close();
  process.exit(code);
}
