/**
 * Operator commands (the portal's admin pages call the same operations, gateway/src/ops/):
 *   npm run admin -- create-admin --email a@b.c        (asks for the password without showing it, or WELLSPRING_ADMIN_PASSWORD)
 *   npm run admin -- create-user --email a@b.c [--admin] [--owner]
 *   npm run admin -- create-key --email a@b.c [--name N] [--models m1,m2] [--rpm N] [--tpm N] [--concurrency N] [--monthly-budget-micros N]
 *                               [--owners o1@x,o2@y] [--min-tier S|A]
 *   npm run admin -- enroll-token --email owner@b.c [--label L]
 *   npm run admin -- agents
 *   npm run admin -- revoke-agent --id agt_…
 *   npm run admin -- set-tier --id agt_… --tier S|A|discount
 *   npm run admin -- set-agent-rate --id agt_… --mode auto | --mode expert [--rpm N] [--tpm N] [--concurrency N]
 *                               (for the agent's owner, as the agents page does; pushed to the live agent)
 *   npm run admin -- grant --email a@b.c --micros 5000000 --reason "…" [--grant-id G]
 *   npm run admin -- balance --email a@b.c
 *   npm run admin -- redemption-codes --micros 5000000 --count 100 [--note N] [--expires 2027-01-01T00:00:00Z]
 *   npm run admin -- earnings --email owner@b.c [--days 30]
 *   npm run admin -- request-payout --email owner@b.c --micros N
 *   npm run admin -- payouts
 *   npm run admin -- decide-payout --id pay_… --paid --reference REF | --cancel
 *   npm run admin -- audit                       (exit status 1 when an invariant fails)
 *   npm run admin -- publish-release --dir DIR [--latest] [--minimum X.Y.Z] [--keys FILE]
 *   npm run admin -- release-policy [--latest X.Y.Z|none] [--minimum X.Y.Z|none]
 *   npm run admin -- releases
 *   npm run admin -- ledger verify --agent agt_…  (exit status 1 when the hub's copy of the agent's receipt chain is bad)
 *   npm run admin -- rebuild-from-edge --from FILE…|DIR [--key FILE] [--into-non-empty]
 *                               (agents' `ledger export` files into an empty database; exit status 1 when not everything verified)
 * DATABASE_URL selects the database; without it, the database of the hub running on DATA_DIR (default .data),
 * or, with no hub running, the embedded one in DATA_DIR (cli/database.ts). The CLI never writes the hub's
 * identity files; the enrollment command names the agent URL and tunnel pin the hub published.
 * Money is given and shown in integer micro-USD (1 USD = 1,000,000).
 */
import { userInfo } from "node:os";
import pg from "pg";
import { read } from "read";
import { createDb, currentHubEndpoint, PASSWORD_CHARS_MIN, type Db } from "@wellspring/db";
import {
  AdministratorInputError,
  changeAgent,
  createAdministrator,
  createEnrollmentToken,
  enrollSteps,
  ensureUser,
  formatUsd,
  issueKey,
  Ledger,
  payoutAmountProblem,
  publishRelease,
  readKeySet,
  readReleaseDir,
  revokeAgent,
  setReleasePolicy,
  Treasury,
  unknownModelNames,
  parseAgentRateSettings,
  setOwnAgentRate,
} from "../ops/mod.ts";
import { parseEnv } from "../env.ts";
import { openOperatorDatabase } from "./database.ts";
import { checkArchive } from "../archive/check.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { toHex } from "@wellspring/protocol";
import { loadHubReceiptKey, publicOf } from "../ledger/hub_key.ts";
import { verifyStoredChain } from "../ledger/receipts.ts";
import { readRebuildKey, REBUILD_KEY_FILE } from "../ledger/hub_record.ts";
import { rebuildFromEdge } from "../ledger/rebuild.ts";

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

function micros(args: string[], name = "micros"): bigint {
  const v = flag(args, name);
  if (!v || !/^[1-9][0-9]{0,18}$/.test(v)) throw new Error(`--${name} must be a positive whole number of micro-USD`);
  return BigInt(v);
}

/** An optional limit flag: a positive whole number, or absent (no limit). */
function limitFlag(args: string[], name: string): number | null {
  const v = flag(args, name);
  if (v === undefined) return null;
  if (!/^[1-9][0-9]{0,8}$/.test(v)) throw new Error(`--${name} must be a positive whole number (at most 999999999)`);
  return Number(v);
}

export interface AdminContext {
  db: Db;
  pool: pg.Pool;
}

/**
 * The new administrator's password: typed at a terminal without being shown (asked twice), or the first line of
 * a piped stdin.
 */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      if (Buffer.concat(chunks).includes(0x0a)) break;
    }
    return Buffer.concat(chunks).toString("utf8").split(/\r?\n/)[0] ?? "";
  }
  const first = await read({ prompt: `Password (at least ${PASSWORD_CHARS_MIN} characters, not shown): `, silent: true, replace: "", output: process.stderr });
  const again = await read({ prompt: "Same password again: ", silent: true, replace: "", output: process.stderr });
  if (first !== again) throw new Error("The two passwords differ: nothing changed");
  return first;
}

/** The operator running the command, for the audit trail. */
const actor = () => `cli:${userInfo().username}`;

export async function runAdmin(ctx: AdminContext, args: string[]): Promise<string> {
  const { db, pool } = ctx;
  const treasury = new Treasury(pool);
  const [command] = args;
  switch (command) {
    case "create-admin": {
      const email = flag(args, "email");
      if (!email) throw new Error("--email is required");
      const password = process.env.WELLSPRING_ADMIN_PASSWORD ?? (await readPassword());
      try {
        const user = await createAdministrator(db, { email, password, actor: actor() });
        return `administrator ${user.id} ${user.email}: sign in to the portal with this email and password`;
      } catch (error) {
        if (error instanceof AdministratorInputError) throw new Error(`Refused: ${error.message}`);
        throw error;
      }
    }
    case "create-user": {
      const email = flag(args, "email")?.toLowerCase();
      if (!email || !/^[^@\s]+@[^@\s]+$/.test(email)) throw new Error("--email must be an email address");
      const user = await ensureUser(db, actor(), email, { admin: args.includes("--admin"), owner: args.includes("--owner") });
      return `user ${user.id} ${user.email}${user.isAdmin ? " admin" : ""}${user.isOwner ? " owner" : ""}`;
    }
    case "create-key": {
      const user = await userByEmail(db, flag(args, "email"));
      const models = flag(args, "models")?.split(",").filter(Boolean) ?? [];
      const unknown = await unknownModelNames(db, models);
      if (unknown.length) throw new Error(`Unknown model(s): ${unknown.join(", ")} (neither in the official price table nor reported by an agent)`);
      // Which agents may serve the key: their owners' emails, and the lowest tier (S above A).
      const ownerEmails = flag(args, "owners")?.split(",").filter(Boolean) ?? [];
      const allowedOwnerIds = await Promise.all(ownerEmails.map(async (email) => (await userByEmail(db, email.toLowerCase())).id));
      const minTier = flag(args, "min-tier") ?? null;
      if (minTier !== null && minTier !== "S" && minTier !== "A") throw new Error("--min-tier must be S or A");
      const key = await issueKey(
        db,
        user.id,
        flag(args, "name") ?? "default",
        {
          allowedModels: models,
          rpmLimit: limitFlag(args, "rpm"),
          tpmLimit: limitFlag(args, "tpm"),
          concurrencyLimit: limitFlag(args, "concurrency"),
          monthlyBudgetMicros: flag(args, "monthly-budget-micros") === undefined ? null : micros(args, "monthly-budget-micros"),
          allowedOwnerIds,
          minAgentTier: minTier,
        },
        actor(),
      );
      return `key ${key.id} (shown once, store it now):\n${key.secret}`;
    }
    case "enroll-token": {
      const user = await userByEmail(db, flag(args, "email"));
      const hub = await currentHubEndpoint(db);
      if (!hub)
        throw new Error(
          "Cannot print the enrollment command: no hub has published its agent address in this database yet. Start the hub (npm start) once, then run this again.",
        );
      const t = await createEnrollmentToken(db, user.id, flag(args, "label"));
      const steps = enrollSteps({ agentUrl: hub.agentUrl, pin: hub.tunnelPin, token: t.token, name: flag(args, "label") ?? "agent" });
      return [
        `enrollment token ${t.id}, valid until ${t.expiresAt.toISOString()} (UTC), single use:`,
        t.token,
        "",
        "On the key owner's machine, in the agent's folder (agent-deno/; docs/operations/agent.md), run in order:",
        "# 1. enroll",
        steps.enroll,
        "# 2. say which keys and models it offers (edit the models to those the keys serve)",
        steps.configure,
        "# 3. start it with the keys in their environment variables",
        steps.start,
      ].join("\n");
    }
    case "agents": {
      const agents = await db.agent.findMany({ orderBy: { createdAt: "asc" }, include: { owner: { select: { email: true } } } });
      if (agents.length === 0) return "no agents enrolled";
      return agents
        .map(
          (a) =>
            `${a.id} ${a.status} tier=${a.tier} owner=${a.owner.email} version=${a.version ?? "-"} lastSeen=${a.lastSeenAt?.toISOString() ?? "never"} models=${a.models.join(",")}`,
        )
        .join("\n");
    }
    case "revoke-agent": {
      const id = flag(args, "id");
      if (!id) throw new Error("--id is required");
      if (!(await revokeAgent(db, actor(), id))) throw new Error(`Cannot revoke agent ${id}: no such agent, or it is revoked already`);
      return `agent ${id} revoked; its connection is closed and its next handshake refused`;
    }
    case "set-tier": {
      const id = flag(args, "id");
      const tier = flag(args, "tier");
      if (!id) throw new Error("--id is required");
      if (tier !== "S" && tier !== "A" && tier !== "discount") throw new Error("--tier must be S, A or discount");
      if (!(await changeAgent(db, actor(), id, { tier }))) throw new Error(`Cannot set the tier of agent ${id}: no such agent, or it is revoked`);
      return `agent ${id} is now tier ${tier}; requests that start from now settle at it`;
    }
    case "set-agent-rate": {
      const id = flag(args, "id");
      if (!id) throw new Error("--id is required");
      const parsed = parseAgentRateSettings({
        rateMode: flag(args, "mode"),
        rpm: flag(args, "rpm"),
        tpm: flag(args, "tpm"),
        concurrency: flag(args, "concurrency"),
      });
      if (!parsed.ok) throw new Error(Object.values(parsed.errors).join(" "));
      const agent = await db.agent.findUnique({ where: { id }, select: { ownerId: true } });
      if (!agent || !(await setOwnAgentRate(db, agent.ownerId, id, parsed.settings)))
        throw new Error(`Cannot set the rate mode of agent ${id}: no such agent, or it is revoked`);
      const s = parsed.settings;
      return s.rateMode === "auto"
        ? `agent ${id}: auto mode (it learns its provider key's limits); sent to it if it is connected`
        : `agent ${id}: expert mode, ${s.rpmLimit ?? "no"} requests/min, ${s.tpmLimit ?? "no"} tokens/min, ${s.concurrencyLimit ?? "no limit of"} requests at once; sent to it if it is connected`;
    }
    case "grant": {
      const user = await userByEmail(db, flag(args, "email"));
      const reason = flag(args, "reason");
      if (!reason) throw new Error("--reason is required (it goes into the audit trail)");
      const amount = micros(args);
      const result = await treasury.grant(actor(), user.id, amount, reason, flag(args, "grant-id"));
      return result === "credited" ? `granted ${formatUsd(amount)} to ${user.email}` : "that grant id was already credited: nothing changed";
    }
    case "balance": {
      const user = await userByEmail(db, flag(args, "email"));
      const w = await db.wallet.findUnique({ where: { userId: user.id } });
      return `${user.email}: available ${formatUsd(w?.availableMicros ?? 0n)}, reserved ${formatUsd(w?.reservedMicros ?? 0n)}`;
    }
    case "redemption-codes": {
      const count = Number(flag(args, "count") ?? "1");
      const expires = flag(args, "expires");
      const expiresAt = expires ? new Date(expires) : null;
      if (expiresAt && Number.isNaN(expiresAt.getTime())) throw new Error("--expires must be an ISO 8601 time (UTC)");
      const batch = await treasury.createRedemptionBatch(actor(), { amountMicros: micros(args), count, note: flag(args, "note"), expiresAt });
      return [`batch ${batch.batchId}: ${batch.codes.length} codes of ${formatUsd(micros(args))} each (shown once, store them now):`, ...batch.codes].join(
        "\n",
      );
    }
    case "earnings": {
      const user = await userByEmail(db, flag(args, "email"));
      const days = await treasury.ownerEarningsByDay(user.id, Number(flag(args, "days") ?? "30"));
      const balance = await treasury.ownerBalance(user.id);
      return [
        `${user.email}: ${formatUsd(balance)} not yet requested for payout`,
        ...days.map((d) => `${d.day} (UTC)  ${formatUsd(d.earningMicros)}  ${d.requests} requests`),
      ].join("\n");
    }
    case "request-payout": {
      const user = await userByEmail(db, flag(args, "email"));
      const amount = micros(args);
      const problem = payoutAmountProblem(amount);
      if (problem) throw new Error(`Refused: ${problem}`);
      const r = await treasury.requestPayout(user.id, amount);
      return r.outcome === "requested" ? `payout ${r.payoutId} requested` : `refused: only ${formatUsd(r.availableMicros)} is available`;
    }
    case "payouts": {
      const rows = await db.payout.findMany({ orderBy: { requestedAt: "desc" }, take: 100, include: { owner: { select: { email: true } } } });
      if (rows.length === 0) return "no payouts";
      return rows
        .map(
          (p) =>
            `${p.id} ${p.status} ${formatUsd(p.amountMicros)} ${p.owner.email} requested=${p.requestedAt.toISOString()}${p.reference ? ` ref=${p.reference}` : ""}`,
        )
        .join("\n");
    }
    case "decide-payout": {
      const id = flag(args, "id");
      if (!id) throw new Error("--id is required");
      const decision = args.includes("--paid") ? "paid" : args.includes("--cancel") ? "cancelled" : null;
      if (!decision) throw new Error("say --paid --reference REF, or --cancel");
      const r = await treasury.decidePayout(actor(), id, decision, flag(args, "reference"));
      return r === "done" ? `payout ${id} ${decision}` : `payout ${id} does not exist or was already decided`;
    }
    case "ledger": {
      const agentId = flag(args, "agent");
      if (args[1] !== "verify" || !agentId) throw new Error("usage: ledger verify --agent agt_…");
      const keyFile = join(process.env.DATA_DIR ?? ".data", "receipt-key.pk8");
      const hubKey = existsSync(keyFile) ? (await loadHubReceiptKey(keyFile)).privateKey : null;
      const verdict = await verifyStoredChain(db, agentId, hubKey ? await publicOf(hubKey) : null);
      if (!verdict.ok) throw new Error(`agent ${agentId}: BAD at sequence ${verdict.firstBadSeq} (${verdict.fault}: ${verdict.detail})`);
      const disputed = await db.agentReceipt.count({ where: { agentId, disputed: { not: null } } });
      return `agent ${agentId}: ${verdict.count} receipts, chain whole${hubKey ? ", countersignatures verify" : ""}${disputed ? ` (${disputed} disputed, not countersigned)` : ""}; hub tail ${verdict.tail.seq} ${toHex(verdict.tail.hash)}`;
    }
    case "rebuild-from-edge": {
      const from = args.flatMap((a, i) => (i > 0 && !a.startsWith("--") && args[i - 1] !== "--key" ? [a] : []));
      if (!args.includes("--from") || from.length === 0) throw new Error("usage: rebuild-from-edge --from FILE…|DIR [--key FILE] [--into-non-empty]");
      const keyFile = flag(args, "key") ?? join(process.env.DATA_DIR ?? ".data", REBUILD_KEY_FILE);
      const report = await rebuildFromEdge({
        pool,
        rebuildKey: await readRebuildKey(keyFile).catch((error: unknown) => {
          throw new Error(`Cannot rebuild: the hub's rebuild key ${keyFile} cannot be read (${(error as Error).message})`);
        }),
        from,
        intoNonEmpty: args.includes("--into-non-empty"),
        progress: (line) => console.error(line),
      });
      if (!report.ok) throw new Error(`rebuild-from-edge: NOT EVERYTHING VERIFIED\n${report.lines.join("\n")}`);
      return report.lines.join("\n");
    }
    case "audit": {
      const report = await new Ledger(pool).audit();
      // Archived days count through their totals; the archive check says whether those can be trusted.
      const archive = await checkArchive(pool);
      const problems = [...report.problems, ...archive.problems];
      if (problems.length > 0) throw new Error(`ledger audit FAILED:\n${problems.join("\n")}`);
      return `ledger audit ok: journal sums to 0, ${report.walletsChecked} wallets match the journal, no negative balance, reserves match requests in flight, ${archive.slicesChecked} archived days balance and match their manifests (\`npm run archive -- verify\` reads them back)`;
    }
    case "publish-release": {
      const dir = flag(args, "dir");
      if (!dir) throw new Error("--dir is required (a folder made by `npm run release -- build`)");
      // The keys agent installs pin: a release they would refuse is refused here first.
      const trusted = await readKeySet(flag(args, "keys") ?? new URL("../../../agent-deno/release-keys.json", import.meta.url).pathname);
      if (trusted.keys.length === 0)
        throw new Error("Cannot publish: no release keys are pinned (agent-deno/release-keys.json); agents would refuse every release");
      const minimum = flag(args, "minimum");
      const r = await publishRelease(db, await readReleaseDir(dir), {
        trusted,
        publishedBy: actor(),
        latest: args.includes("--latest"),
        minimumVersion: minimum ?? null,
      });
      return `release ${r.version} published${args.includes("--latest") ? " and offered to every agent" : " (not offered: pass --latest, or run release-policy --latest)"}${minimum ? `; agents below ${minimum} are refused` : ""}`;
    }
    case "release-policy": {
      const value = (name: string) => {
        const v = flag(args, name);
        return v === undefined ? undefined : v === "none" ? null : v;
      };
      const change = {
        ...(value("latest") !== undefined ? { latestVersion: value("latest") } : {}),
        ...(value("minimum") !== undefined ? { minimumVersion: value("minimum") } : {}),
      };
      const p =
        Object.keys(change).length > 0 ? await setReleasePolicy(db, change, actor()) : await db.agentReleasePolicy.findUniqueOrThrow({ where: { id: 1 } });
      return `agents are offered ${p.latestVersion ?? "no release"}; versions below ${p.minimumVersion ?? "(none)"} are refused`;
    }
    case "releases": {
      const rows = await db.agentRelease.findMany({ orderBy: { publishedAt: "desc" }, select: { version: true, publishedAt: true, publishedBy: true } });
      const p = await db.agentReleasePolicy.findUniqueOrThrow({ where: { id: 1 } });
      if (rows.length === 0) return "no agent releases published";
      return rows
        .map(
          (r) =>
            `${r.version} published=${r.publishedAt.toISOString()} by=${r.publishedBy}${r.version === p.latestVersion ? " latest" : ""}${r.version === p.minimumVersion ? " minimum" : ""}`,
        )
        .join("\n");
    }
    default:
      throw new Error(
        "usage: admin create-user|create-key|enroll-token|agents|revoke-agent|set-tier|grant|balance|redemption-codes|earnings|request-payout|payouts|decide-payout|audit|publish-release|release-policy|releases (see gateway/src/cli/admin.ts)",
      );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const env = parseEnv();
  let code = 0;
  try {
    const database = await openOperatorDatabase({ databaseUrl: env.DATABASE_URL, dataDir: env.DATA_DIR });
    const db = createDb(database.databaseUrl, { poolConnectionsMax: 2 });
    const pool = new pg.Pool({ connectionString: database.databaseUrl, max: 2 });
    try {
      console.log(await runAdmin({ db, pool }, process.argv.slice(2)));
    } catch (error) {
      console.error((error as Error).message);
      code = 1;
    }
    await pool.end();
    await db.$disconnect();
    await database.close();
  } catch (error) {
    console.error((error as Error).message);
    code = 1;
  }
  process.exit(code);
}
