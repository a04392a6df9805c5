import { describe, expect, it } from "vitest";
import type { Db } from "@wellspring/db/core";
import { KEY_CACHE_TTL_MS, KEY_STALE_IF_UNREACHABLE_MS, KeyVerifier, LAST_USED_WRITE_INTERVAL_MS } from "./keys.ts";
import { hashKey } from "../ops/keys.ts";
import { hashPrefix64, KeyFilter } from "./key_filter.ts";

interface Row {
  id: string;
  userId: string;
  status: "active" | "suspended" | "revoked";
  allowedModels: string[];
  expiresAt: Date | null;
  user: { status: "active" | "suspended"; planId: string | null };
}

/** A database stand-in that answers the verifier's one query from rows keyed by hash, and counts queries. */
function fakeDb(rows: Map<string, Row>) {
  const stats = { queries: 0, unreachable: false, lastUsedWrites: 0 };
  const db = {
    virtualKey: {
      findUnique: async ({ where }: { where: { hash: string } }) => {
        stats.queries++;
        if (stats.unreachable) throw new Error("connect ECONNREFUSED 127.0.0.1:5432");
        const r = rows.get(where.hash); // read when the query runs
        const answer = r ? structuredClone(r) : null;
        await Promise.resolve();
        return answer;
      },
      update: () => {
        stats.lastUsedWrites++;
        return Promise.resolve({});
      },
    },
  } as unknown as Db;
  return { db, stats };
}

const secret = (c: string) => `sk-ws-${c.repeat(40)}`;
const row = (id: string, over: Partial<Row> = {}): Row => ({
  id,
  userId: "usr_1",
  status: "active",
  allowedModels: [],
  expiresAt: null,
  user: { status: "active", planId: null },
  ...over,
});

function setup(keys: Record<string, Row>, missLookupsPerSecond = 2) {
  const rows = new Map(Object.entries(keys).map(([s, r]) => [hashKey(s), r]));
  const { db, stats } = fakeDb(rows);
  const filter = new KeyFilter();
  filter.beginRebuild().install(BigUint64Array.from([...rows.keys()].map(hashPrefix64)));
  let now = 1_000_000;
  const v = new KeyVerifier(db, { filter, missLookupsPerSecond, now: () => now });
  return { v, rows, stats, filter, advance: (ms: number) => (now += ms) };
}

describe("KeyVerifier", () => {
  it("refuses keys the filter does not hold without a query beyond the miss budget", async () => {
    const { v, stats, advance } = setup({ [secret("a")]: row("key_a") }, 2);
    const unknown = Array.from({ length: 50 }, (_, i) => `sk-ws-${i.toString(36).padStart(40, "z")}`);
    for (const s of unknown) expect(await v.verify(s)).toEqual({ ok: false, reason: "invalid" });
    expect(stats.queries).toBe(2); // the budget: 2 a second
    expect(v.counts).toMatchObject({ missLookups: 2, missRefused: 48, lookups: 0 });
    advance(500);
    await v.verify(`sk-ws-${"y".repeat(40)}`);
    expect(stats.queries).toBe(3);
    // A key the filter holds is looked up as before.
    expect((await v.verify(secret("a"))).ok).toBe(true);
    expect(v.counts.lookups).toBe(1);
  });

  it("a key missing from the filter (its event not arrived) works from the budget and joins the filter", async () => {
    const { v, rows, filter } = setup({});
    const late = secret("b");
    rows.set(hashKey(late), row("key_b"));
    expect((await v.verify(late)).ok).toBe(true);
    expect(v.counts.filterStale).toBe(1);
    expect(filter.has(hashPrefix64(hashKey(late)))).toBe(true);
  });

  it("a key_created event puts the key in the filter: it works while the miss budget is spent", async () => {
    const { v, rows } = setup({}, 1);
    await v.verify(`sk-ws-${"x".repeat(40)}`); // spends the budget
    const fresh = secret("c");
    rows.set(hashKey(fresh), row("key_c"));
    expect((await v.verify(fresh)).ok).toBe(false);
    v.keyCreated(hashKey(fresh).slice(0, 16));
    expect((await v.verify(fresh)).ok).toBe(true);
  });

  it("key_changed and user_changed drop cached answers at once; without an event the cache holds for its TTL", async () => {
    const s1 = secret("d");
    const s2 = secret("e");
    const { v, rows, advance } = setup({ [s1]: row("key_d"), [s2]: row("key_e", { userId: "usr_2" }) });
    expect((await v.verify(s1)).ok).toBe(true);
    expect((await v.verify(s2)).ok).toBe(true);
    rows.get(hashKey(s1))!.status = "revoked";
    rows.get(hashKey(s2))!.user.status = "suspended";
    advance(KEY_CACHE_TTL_MS - 1);
    expect((await v.verify(s1)).ok).toBe(true); // cached
    v.keyChanged("key_d");
    expect(await v.verify(s1)).toEqual({ ok: false, reason: "invalid" });
    expect((await v.verify(s2)).ok).toBe(true);
    v.userChanged("usr_2");
    expect(await v.verify(s2)).toEqual({ ok: false, reason: "suspended" });
    // Reinstated: the refusal is dropped as soon as the event arrives, not after the TTL.
    rows.get(hashKey(s2))!.user.status = "active";
    v.userChanged("usr_2");
    expect((await v.verify(s2)).ok).toBe(true);
  });

  it("a key an administrator suspended is refused as key_suspended once its key_changed event arrives, and serves again when reinstated", async () => {
    const s = secret("g");
    const { v, rows } = setup({ [s]: row("key_g") });
    expect((await v.verify(s)).ok).toBe(true);
    rows.get(hashKey(s))!.status = "suspended";
    v.keyChanged("key_g");
    expect(await v.verify(s)).toEqual({ ok: false, reason: "key_suspended" });
    rows.get(hashKey(s))!.status = "active";
    v.keyChanged("key_g");
    expect((await v.verify(s)).ok).toBe(true);
  });

  it("concurrent first uses of one key share one query", async () => {
    const s = secret("f");
    const { v, stats } = setup({ [s]: row("key_f") });
    const checks = await Promise.all(Array.from({ length: 10 }, () => v.verify(s)));
    expect(checks.every((c) => c.ok)).toBe(true);
    expect(stats.queries).toBe(1);
  });
});

describe("KeyVerifier while the database is unreachable", () => {
  it("accepts a key whose last answer was active, for a bounded time, and never one an event revoked", async () => {
    const [a, b, c] = [secret("h"), secret("i"), secret("j")];
    const { v, stats, advance } = setup({ [a]: row("key_h"), [b]: row("key_i"), [c]: row("key_j") });
    for (const s of [a, b]) expect((await v.verify(s)).ok).toBe(true);
    stats.unreachable = true;
    advance(KEY_CACHE_TTL_MS + KEY_STALE_IF_UNREACHABLE_MS - 1);
    const before = stats.queries;
    expect((await v.verify(a)).ok).toBe(true); // looked up (and failed), then the last answer
    expect(stats.queries).toBe(before + 1);
    expect(v.counts.staleServed).toBe(1);
    v.keyChanged("key_i"); // a revocation seen before the outage's lookup: never served from memory
    await expect(v.verify(b)).rejects.toThrow(/ECONNREFUSED/);
    await expect(v.verify(c)).rejects.toThrow(/ECONNREFUSED/); // never verified: nothing to fall back on
    advance(1);
    await expect(v.verify(a)).rejects.toThrow(/ECONNREFUSED/); // past the bound
  });

  it("after events may have been missed every key is looked up again, with its last answer kept for an outage", async () => {
    const s = secret("k");
    const { v, rows, stats } = setup({ [s]: row("key_k") });
    expect((await v.verify(s)).ok).toBe(true);
    v.forgetAll();
    stats.unreachable = true;
    expect((await v.verify(s)).ok).toBe(true);
    expect(v.counts.staleServed).toBe(1);
    stats.unreachable = false;
    rows.get(hashKey(s))!.status = "revoked"; // changed while events were missed: the lookup sees it
    v.forgetAll();
    expect(await v.verify(s)).toEqual({ ok: false, reason: "invalid" });
  });
});

describe("KeyVerifier and events racing a lookup", () => {
  it("an answer loaded while a key_changed event arrived is used once but not cached", async () => {
    const s = secret("g");
    const { v, rows } = setup({ [s]: row("key_g") });
    const first = v.verify(s); // its query is in flight
    rows.get(hashKey(s))!.status = "revoked";
    v.keyChanged("key_g"); // the revocation's event overtakes the answer
    expect((await first).ok).toBe(true); // read before the change: this one request passes
    expect(await v.verify(s)).toEqual({ ok: false, reason: "invalid" }); // not served from a stale cache entry
  });
});

describe("KeyVerifier's lastUsedAt writes", () => {
  it("writes once per interval per key and forgets keys not used within it (memory bounded by recent keys)", async () => {
    const keys = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`sk-ws-${i.toString(36).padStart(40, "k")}`, row(`key_${i}`)]));
    const { v, stats, advance } = setup(keys);
    for (const s of Object.keys(keys)) expect((await v.verify(s)).ok).toBe(true);
    expect(stats.lastUsedWrites).toBe(300);
    expect(v.lastUsedTracked).toBe(300);
    // Within the interval (and past the cache's TTL): no second write.
    advance(KEY_CACHE_TTL_MS + 1);
    for (const s of Object.keys(keys)) await v.verify(s);
    expect(stats.lastUsedWrites).toBe(300);
    // A whole interval later one key is used: it is written again, and the 299 idle keys are forgotten.
    advance(LAST_USED_WRITE_INTERVAL_MS);
    await v.verify(Object.keys(keys)[7]!);
    expect(stats.lastUsedWrites).toBe(301);
    expect(v.lastUsedTracked).toBe(1);
  });
});
