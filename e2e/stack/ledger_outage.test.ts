/**
 * PostgreSQL goes away under a running hub (a TCP proxy between the gateway process and the database is cut):
 * requests the gateway's held credit covers are still served; their settlements go to the durable spool on disk
 * and land exactly once when the database is back; no new credit is granted meanwhile (503 in the route's
 * shape, never 500); readiness says the ledger is down; and a gateway killed with a full spool has it replayed
 * by the next gateway on the same data folder. The audit is clean after each.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { Ledger } from "../../gateway/src/billing/ledger.ts";
import { fund, settledWallet, startGatewayProc, startStack, type Stack } from "./harness.ts";
import { startTcpProxy, type TcpProxy } from "./tcp_proxy.ts";

/** Short lease timings so the test sees validity lapse and a dead gateway found in seconds. */
const LEASE_ENV = { BILLING_LEASE_RENEW_INTERVAL_MS: "200", BILLING_LEASE_VALID_MS: "1000", BILLING_GATEWAY_DEAD_AFTER_MS: "2000" };

let stack: Stack;
let proxy: TcpProxy;
let pool: pg.Pool;
beforeAll(async () => {
  proxy = await startTcpProxy({ host: "127.0.0.1", port: 5432 });
  stack = await startStack({ gatewayEnv: { BILLING_ENABLED: "1", ...LEASE_ENV }, gatewayDatabaseUrl: (url) => proxy.via(url) });
  pool = new pg.Pool({ connectionString: stack.database.url, max: 4 });
  pool.on("error", () => {});
}, 120_000);
afterAll(async () => {
  proxy?.restore();
  await pool?.end();
  await stack?.close();
  await proxy?.close();
});

async function user(micros: bigint) {
  const userId = newId("usr");
  await stack.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  await fund(stack.database.url, userId, micros);
  return { userId, key: (await issueKey(stack.db, userId, "outage")).secret, spare: (await issueKey(stack.db, userId, "never used")).secret };
}

const chat = (origin: string, key: string, content = "[mock chunks=3] hi") =>
  fetch(`${origin}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", max_tokens: 20, messages: [{ role: "user", content }] }),
  });

async function readiness(
  origin: string,
): Promise<{ status: number; body: { ready: boolean; ledger: string; spooledSettlements: number; spooledRecords: number } }> {
  const res = await fetch(`${origin}/readyz`);
  return { status: res.status, body: (await res.json()) as { ready: boolean; ledger: string; spooledSettlements: number; spooledRecords: number } };
}

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

async function settledCharges(requestIds: string[]): Promise<Map<string, bigint>> {
  const r = await pool.query<{ request_id: string; charge_micros: string }>(
    "SELECT request_id, charge_micros FROM reservations WHERE request_id = ANY($1) AND status = 'settled'",
    [requestIds],
  );
  return new Map(r.rows.map((x) => [x.request_id, BigInt(x.charge_micros)]));
}

describe("the ledger goes away", () => {
  it("held credit keeps serving, settlements spool and land exactly once, no new credit, readiness says so", async () => {
    const { userId, key, spare } = await user(5_000_000n);
    const origin = stack.gateway.apiOrigin;
    expect((await chat(origin, key)).status).toBe(200); // the gateway now holds a lease on this wallet, and knows the key
    expect((await readiness(origin)).status).toBe(200);

    proxy.cut();
    const served: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await chat(origin, key);
      expect(res.status).toBe(200);
      await res.text();
      served.push(res.headers.get("x-wellspring-request-id")!);
    }
    const down = await until("readiness to report the ledger down", async () => {
      const r = await readiness(origin);
      return r.status === 503 && r.body.spooledSettlements >= 5 ? r : null;
    });
    expect(down.body).toMatchObject({ ready: false, ledger: "unreachable" });
    const spoolFiles = join(stack.gateway.dataDir, "spool");
    expect(existsSync(spoolFiles)).toBe(true);

    // A key the gateway has not seen needs the database: 503 in the route's shape, not a 500.
    const unseen = await chat(origin, spare);
    expect(unseen.status).toBe(503);
    expect(((await unseen.json()) as { error: { type: string } }).error.type).toBe("server_error");
    // Once the held credit is older than its validity, it is not used either: no new credit while the ledger is away.
    await sleep(1_200);
    const refused = await chat(origin, key);
    expect(refused.status).toBe(503);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toMatch(/Billing is briefly unavailable/);

    proxy.restore();
    const back = await until("the spool to drain", async () => {
      const r = await readiness(origin);
      return r.status === 200 && r.body.spooledSettlements === 0 && r.body.spooledRecords === 0 ? r : null;
    });
    expect(back.body.ledger).toBe("reachable");
    const charges = await until("every served request to be settled", async () => {
      const m = await settledCharges(served);
      return m.size === served.length ? m : null;
    });
    for (const c of charges.values()) expect(c).toBeGreaterThan(0n);
    // Exactly once: one usage entry per request, and their records too.
    const journal = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM journal_entries WHERE kind = 'usage' AND request_id = ANY($1)", [served]);
    expect(journal.rows[0]!.n).toBe(served.length);
    const records = await until("the request records", async () => {
      const r = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM request_records WHERE id = ANY($1)", [served]);
      return r.rows[0]!.n === served.length ? r.rows[0]!.n : null;
    });
    expect(records).toBe(served.length);
    await settledWallet(pool, userId, 10_000);
    expect((await new Ledger(pool).audit()).problems).toEqual([]);
  }, 90_000);

  it("a gateway killed with settlements in its spool has them replayed by the next gateway on its data folder", async () => {
    const { userId, key } = await user(5_000_000n);
    const first = stack.gateway;
    expect((await chat(first.apiOrigin, key)).status).toBe(200);
    proxy.cut();
    const served: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await chat(first.apiOrigin, key);
      expect(res.status).toBe(200);
      await res.text();
      served.push(res.headers.get("x-wellspring-request-id")!);
    }
    const spoolFile = await until("the settlements to reach the spool on disk", async () => {
      const { body } = await readiness(first.apiOrigin);
      if (body.spooledSettlements < served.length) return null;
      const dir = join(first.dataDir, "spool");
      const { readdirSync } = await import("node:fs");
      const name = readdirSync(dir).find((n) => n.endsWith(".settlements.jsonl"));
      // The first call's settlement may have been spooled too (the cut came before it was written): wait for these.
      return name && served.every((id) => readFileSync(join(dir, name), "utf8").includes(id)) ? join(dir, name) : null;
    });
    const spooled = readFileSync(spoolFile, "utf8");
    for (const id of served) expect(spooled).toContain(id);
    expect(spooled).not.toMatch(/sk-ws-|hi"/); // ids and amounts, never a key or content
    await first.stop("SIGKILL");
    proxy.restore();
    // The next gateway on the same folder: a new id; it takes the dead one's spool over once the ledger says it is dead.
    stack.gateway = await startGatewayProc(proxy.via(stack.database.url), { BILLING_ENABLED: "1", ...LEASE_ENV }, first.dataDir);
    const charges = await until(
      "the dead gateway's settlements to be replayed",
      async () => {
        const m = await settledCharges(served);
        return m.size === served.length ? m : null;
      },
      30_000,
    );
    expect([...charges.values()].every((c) => c > 0n)).toBe(true);
    await until("the spool file to be taken over", () => Promise.resolve(!existsSync(spoolFile)));
    // The dead gateway's lease is released by the survivor, so nothing stays held.
    await settledWallet(pool, userId, 15_000);
    expect((await new Ledger(pool).audit()).problems).toEqual([]);
  }, 90_000);
});
