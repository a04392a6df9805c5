// The hub's side of the edge ledger against a real PostgreSQL: receipts checked link by link and against the
// hub's settlement rows, countersigned, kept once; claims acknowledged again, never stored twice; forks and bad
// signatures refused and flagged; foreign, unsettled and disagreeing receipts kept as disputed, with later receipts
// still settled; crash-witnessed receipts bounded by the agent's session ends; the stored chain verified and its
// tampering named.
import { randomBytes } from "node:crypto";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import {
  CRASH_GAP_MAX_MS,
  decodeReceipt,
  generateAgentKeyPair,
  importReceiptVerifyKey,
  RECEIPT_GENESIS_HASH,
  signReceipt,
  toBase64Url,
  verifyCountersignature,
  fromBase64Url,
  receiptHash,
  type Receipt,
  type SignedReceipt,
} from "@wellspring/protocol";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import { agentLedgerSummaries } from "../ops/agent_ledger.ts";
import { loadHubReceiptKey } from "./hub_key.ts";
import { hubRecordJson, HubRecordSealer, openHubRecord, sealHubRecord } from "./hub_record.ts";
import { releasePresence } from "../tunnel/presence.ts";
import { EdgeReceipts, UNRECEIPTED_REOFFER_AGE_MS, UNRECEIPTED_RESEND_WINDOW_MS, verifyStoredChain, type HubReceiptKey } from "./receipts.ts";

let database: TestDatabase;
let hubKey: HubReceiptKey;
const log = createLogger({ proc: "test" }, "error");
const USAGE = { inputTokens: 12, outputTokens: 40, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };

beforeAll(async () => {
  database = await createTestDatabase();
  hubKey = await loadHubReceiptKey(join(await mkdtemp(join(tmpdir(), "ws-hubkey-")), "receipt-key.pk8"));
}, 60_000);
afterAll(async () => {
  await database?.drop();
});

async function enrolledAgent() {
  const db = database.db;
  const owner = await db.user.create({ data: { id: newId("usr"), email: `${newId("usr")}@example.com`, isOwner: true } });
  const { pair } = await generateAgentKeyPair();
  const agent = await db.agent.create({ data: { id: newId("agt"), ownerId: owner.id, name: "a", publicKey: pair.publicKey } });
  return { agent: { id: agent.id, publicKey: pair.publicKey }, privateKey: pair.privateKey, ownerId: owner.id };
}

/** A settled request as the meter writes it (the reservation row), for `agentId`. */
async function settled(agentId: string, ownerId: string, charge = 150n, earning = 105n, requestId = newId("req")) {
  await database.db.reservation.create({
    data: {
      requestId,
      userId: ownerId,
      amountMicros: 1000n,
      status: "settled",
      chargeMicros: charge,
      earningMicros: earning,
      priceVer: 1,
      model: "gpt-4o-mini",
      agentId,
      ownerId,
      tierBps: 7000,
      inputTokens: 12,
      outputTokens: 40,
      cachedInputTokens: 0,
      settledAt: new Date(),
    },
  });
  return requestId;
}

class Chain {
  tail = { seq: 0, hash: RECEIPT_GENESIS_HASH };
  constructor(
    private readonly agentId: string,
    private readonly key: CryptoKey,
  ) {}
  async next(requestId: string, over: Partial<Receipt> = {}): Promise<SignedReceipt> {
    const s = await signReceipt(this.key, {
      seq: this.tail.seq + 1,
      prevHash: this.tail.hash,
      agentId: this.agentId,
      requestId,
      model: "gpt-4o-mini",
      reportedUsage: USAGE,
      chargedUsage: USAGE,
      estimated: false,
      priceVer: 1,
      tierBps: 7000,
      chargeMicros: 150n,
      earningMicros: 105n,
      agentEarningMicros: 105n,
      startedAtMs: Date.now() - 100,
      endedAtMs: Date.now(),
      endCause: "completed",
      ...over,
    });
    this.tail = { seq: s.receipt.seq, hash: s.hash };
    return s;
  }
}

/** An enrolled agent whose first `n` receipts (each for a settled request) the hub has taken. */
async function agentWithReceipts(n: number) {
  const { agent, privateKey, ownerId } = await enrolledAgent();
  const edge = new EdgeReceipts(database.db, hubKey, log);
  const chain = new Chain(agent.id, privateKey);
  const receipts: SignedReceipt[] = [];
  for (let i = 0; i < n; i++) receipts.push(await chain.next(await settled(agent.id, ownerId)));
  await edge.accept(agent, wire(...receipts));
  return { agent, ownerId, edge, receipts };
}

const wire = (...s: SignedReceipt[]) => ({ receipts: s.map((r) => ({ body: toBase64Url(r.body), signature: toBase64Url(r.signature) })) });

async function openFlags(agentId: string, kind: string) {
  return database.db.riskFlag.findMany({ where: { subject: `agent:${agentId}`, kind, status: "open" } });
}

describe("edge receipts at the hub", () => {
  it("keeps a chain of receipts that match settlements, countersigned; a claim of the same receipts is acknowledged again and stored once", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const receipts = [];
    for (let i = 0; i < 5; i++) receipts.push(await chain.next(await settled(agent.id, ownerId)));
    const acks = await edge.accept(agent, wire(...receipts));
    expect(acks.map((a) => a.refused)).toEqual([null, null, null, null, null]);
    const hubVerify = (await importReceiptVerifyKey(hubKey.publicKey))!;
    for (const [i, a] of acks.entries()) {
      expect(a.seq).toBe(i + 1);
      expect(await verifyCountersignature(hubVerify, receipts[i]!.hash, fromBase64Url(a.countersignature!))).toBe(true);
    }
    // The gateway crashed before the agent got its acks: the agent claims them all again.
    const again = await edge.accept(agent, wire(...receipts));
    expect(again).toEqual(acks);
    expect(await database.db.agentReceipt.count({ where: { agentId: agent.id } })).toBe(5);
    expect((await edge.tail(agent.id)).seq).toBe(5);
    const verdict = await verifyStoredChain(database.db, agent.id, hubVerify);
    expect(verdict.ok).toBe(true);
    expect(await openFlags(agent.id, "receipt_refused")).toHaveLength(0);
  });

  it("judges a batch receipt by receipt: a repeat inside it is answered as the first; one waiting for its settlement holds back those after it", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const first = await chain.next(await settled(agent.id, ownerId));
    const unsettledId = newId("req");
    const waiting = await chain.next(unsettledId);
    const after = await chain.next(await settled(agent.id, ownerId));
    const acks = await edge.accept(agent, wire(first, first, waiting, after));
    expect(acks.map((a) => a.refused)).toEqual([null, null, "retry", "retry"]);
    expect(acks[1]).toEqual(acks[0]);
    expect(await database.db.agentReceipt.count({ where: { agentId: agent.id } })).toBe(1);
    // Its settlement lands: the receipts held back are taken, in order, in one batch.
    await settled(agent.id, ownerId, 150n, 105n, unsettledId);
    const later = await edge.accept(agent, wire(waiting, after));
    expect(later.map((a) => [a.seq, a.refused])).toEqual([
      [2, null],
      [3, null],
    ]);
    expect((await edge.tail(agent.id)).seq).toBe(3);
    expect(await openFlags(agent.id, "receipt_refused")).toHaveLength(0);
  });

  it("judges a batch in chain order whatever order it came in: receipts that came before the one they follow are stored with it", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const receipts: SignedReceipt[] = [];
    for (let i = 0; i < 6; i++) receipts.push(await chain.next(await settled(agent.id, ownerId)));
    // Answers to re-offered statements (in settlement order) ahead of the claim that carries the chain's next one.
    const acks = await edge.accept(agent, wire(receipts[5]!, receipts[3]!, receipts[4]!, receipts[1]!, receipts[2]!, receipts[0]!));
    expect(acks.map((a) => [a.seq, a.refused])).toEqual([
      [6, null],
      [4, null],
      [5, null],
      [2, null],
      [3, null],
      [1, null],
    ]);
    expect((await edge.tail(agent.id)).seq).toBe(6);
    expect((await verifyStoredChain(database.db, agent.id, await importReceiptVerifyKey(hubKey.publicKey))).ok).toBe(true);
  });

  it("two gateways taking the same agent's receipts at once store each once, in chain order, and acknowledge both with one countersignature", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const [one, two] = [new EdgeReceipts(database.db, hubKey, log), new EdgeReceipts(database.db, hubKey, log)];
    const chain = new Chain(agent.id, privateKey);
    const receipts = [];
    for (let i = 0; i < 6; i++) receipts.push(await chain.next(await settled(agent.id, ownerId)));
    // The agent's claim after a reconnect reaches a second gateway while the first still takes the same receipts.
    const [a, b] = await Promise.all([one.accept(agent, wire(...receipts)), two.accept(agent, wire(...receipts))]);
    expect(a.map((x) => x.refused)).toEqual(Array(6).fill(null));
    expect(b).toEqual(a);
    expect(await database.db.agentReceipt.count({ where: { agentId: agent.id } })).toBe(6);
    expect(await openFlags(agent.id, "receipt_refused")).toHaveLength(0);
  });

  it("refuses and flags a fork and a bad signature (kept: false — the chain stops there, shown to the owner); asks again for one ahead of its tail", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const other = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const first = await chain.next(await settled(agent.id, ownerId));
    expect((await edge.accept(agent, wire(first)))[0]!.refused).toBeNull();

    // Another receipt at sequence 1 (the agent rewrote its history).
    const forked = await new Chain(agent.id, privateKey).next(await settled(agent.id, ownerId));
    expect((await edge.accept(agent, wire(forked)))[0]).toMatchObject({ refused: "fork", disputed: false });
    // Ahead of the hub's tail: not an offence, asked again (a claim fills the gap).
    const ahead = await new Chain(agent.id, privateKey).next("x", { seq: 3, prevHash: chain.tail.hash, requestId: await settled(agent.id, ownerId) });
    expect((await edge.accept(agent, wire(ahead)))[0]!.refused).toBe("retry");
    // Signed by another key.
    const impostor = await new Chain(agent.id, other.privateKey).next("x", { seq: 2, prevHash: chain.tail.hash, requestId: await settled(agent.id, ownerId) });
    expect((await edge.accept(agent, wire(impostor)))[0]).toMatchObject({ refused: "invalid", disputed: false });

    const flags = await openFlags(agent.id, "receipt_refused");
    expect(flags).toHaveLength(1);
    expect(flags[0]!.raisedCount).toBe(2);
    expect(flags[0]!.evidence).toMatchObject({ refused: "invalid", kept: false, seq: 2 });
    expect(await database.db.agentReceipt.count({ where: { agentId: agent.id } })).toBe(1);
    const row = await database.db.agent.findUniqueOrThrow({ where: { id: agent.id } });
    const summary = (await agentLedgerSummaries(database.db, [row])).get(agent.id)!;
    expect(summary.stopped).toMatchObject({ seq: 2, refused: "invalid", detail: "the agent's signature does not verify" });
    expect(summary.disputed).toEqual({ count: 0, latest: null });
  });

  it("keeps a linked receipt for a foreign, unsettled or disagreeing request as disputed (flagged, not countersigned, owner sees it); the receipts after it settle", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const other = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const hubVerify = (await importReceiptVerifyKey(hubKey.publicKey))!;
    const foreignRequest = await settled(other.agent.id, other.ownerId);
    const receipts = [
      await chain.next(await settled(agent.id, ownerId)),
      // A request the hub dispatched to another agent.
      await chain.next(foreignRequest),
      // One that was never settled, long ago.
      await chain.next("req_never", { startedAtMs: 1, endedAtMs: 2 }),
      // More than the hub settled.
      await chain.next(await settled(agent.id, ownerId), { earningMicros: 999n }),
      await chain.next(await settled(agent.id, ownerId)),
    ];
    const acks = await edge.accept(agent, wire(...receipts));
    expect(acks.map((a) => [a.refused, a.disputed, a.countersignature !== null])).toEqual([
      [null, false, true],
      ["not_dispatched", true, false],
      ["not_dispatched", true, false],
      ["mismatch", true, false],
      [null, false, true],
    ]);
    expect(await verifyCountersignature(hubVerify, receipts[4]!.hash, fromBase64Url(acks[4]!.countersignature!))).toBe(true);
    expect((await edge.tail(agent.id)).seq).toBe(5);
    // The chain verifies, disputed receipts included (they carry no countersignature, by design).
    expect((await verifyStoredChain(database.db, agent.id, hubVerify)).ok).toBe(true);
    // A claim of the same receipts is answered the same way and flags nothing again.
    const flagged = (await openFlags(agent.id, "receipt_refused"))[0]!;
    expect(flagged.raisedCount).toBe(3);
    expect(flagged.evidence).toMatchObject({ refused: "mismatch", kept: true, seq: 4 });
    expect(await edge.accept(agent, wire(...receipts))).toEqual(acks);
    expect((await openFlags(agent.id, "receipt_refused"))[0]!.raisedCount).toBe(3);
    // The foreign request's own agent still gets its receipt kept: a disputed receipt never holds its request id.
    const theirs = await new Chain(other.agent.id, other.privateKey).next(foreignRequest);
    expect((await edge.accept(other.agent, wire(theirs)))[0]).toMatchObject({ refused: null });
    // The owner sees the disputes, and no stop.
    const row = await database.db.agent.findUniqueOrThrow({ where: { id: agent.id } });
    const summary = (await agentLedgerSummaries(database.db, [row])).get(agent.id)!;
    expect(summary.disputed).toEqual({ count: 3, latest: { seq: 4, reason: "mismatch", detail: expect.stringContaining("earningMicros 999 ≠ 105") } });
    expect(summary.stopped).toBeNull();
  });

  it("a crash-witnessed receipt is kept only for the hub's dispatch time and a session of the agent that ended within CRASH_GAP_MAX_MS after it", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const dispatchedAt = async (requestId: string) =>
      (await database.db.reservation.findUniqueOrThrow({ where: { requestId }, select: { createdAt: true } })).createdAt.getTime();
    const witnessed = async (requestId: string, atMs?: number) => {
      const t = atMs ?? (await dispatchedAt(requestId));
      return chain.next(requestId, { witness: "dispatched", startedAtMs: t, endedAtMs: t, reportedUsage: null });
    };
    // No session of this agent has ended: a gap the agent claims (forged, or wider than a crash can lose) is disputed.
    const forged = await settled(agent.id, ownerId);
    const [refusedAck] = await edge.accept(agent, wire(await witnessed(forged)));
    expect(refusedAck).toMatchObject({ refused: "not_dispatched", disputed: true, countersignature: null });
    expect((await openFlags(agent.id, "receipt_refused"))[0]!.evidence).toMatchObject({
      refused: "not_dispatched",
      kept: true,
      detail: expect.stringContaining(`to ${CRASH_GAP_MAX_MS} ms after the dispatch`),
    });
    // A dispatch, then the agent's session ends (what the gateway records when the tunnel closes): kept, countersigned.
    const lost = await settled(agent.id, ownerId);
    await releasePresence(database.db, agent.id, "ses_dead");
    expect((await edge.accept(agent, wire(await witnessed(lost))))[0]).toMatchObject({ refused: null });
    // A time other than the hub's dispatch time: disputed.
    const moved = await settled(agent.id, ownerId);
    await releasePresence(database.db, agent.id, "ses_dead_2");
    expect((await edge.accept(agent, wire(await witnessed(moved, (await dispatchedAt(moved)) - 5_000))))[0]).toMatchObject({
      refused: "mismatch",
      disputed: true,
    });
    // The session ended long after the dispatch (the stream's record would have been committed by then): disputed.
    const old = await settled(agent.id, ownerId);
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    await c.query("UPDATE reservations SET created_at = created_at - interval '1 hour' WHERE request_id = $1", [old]);
    await c.end();
    expect((await edge.accept(agent, wire(await witnessed(old))))[0]).toMatchObject({ refused: "not_dispatched", disputed: true });
    expect((await edge.tail(agent.id)).seq).toBe(4);
  });

  it("lists the agent's settlements that have no receipt yet, as statements to send again", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const receipted = await settled(agent.id, ownerId);
    const missing = await settled(agent.id, ownerId, 200n, 140n);
    await edge.accept(agent, wire(await chain.next(receipted)));
    const statements = await edge.unreceipted(agent.id);
    expect(statements).toEqual([
      expect.objectContaining({ requestId: missing, chargeMicros: "200", earningMicros: "140", priceVer: 1, tierBps: 7000, model: "gpt-4o-mini" }),
    ]);
    // The agent signs it: the receipt matches the settlement and is kept.
    const ack = await edge.accept(agent, wire(await chain.next(missing, { chargeMicros: 200n, earningMicros: 140n, agentEarningMicros: 140n })));
    expect(ack[0]!.refused).toBeNull();
    expect(await edge.unreceipted(agent.id)).toEqual([]);
  });

  it("offers a live agent again, page by page, the settlements at least 5 s old that have no receipt, with their dispatch time", async () => {
    const { agent, ownerId } = await enrolledAgent();
    const missing = await settled(agent.id, ownerId);
    const row = await database.db.reservation.findUniqueOrThrow({ where: { requestId: missing }, select: { createdAt: true } });
    const at = (offsetMs: number) => new EdgeReceipts(database.db, hubKey, log, () => Date.now() + offsetMs);
    // Just settled: its statement may be in flight, so not offered periodically (after a handshake it is).
    expect((await at(0).reofferPage(agent.id, null)).statements).toEqual([]);
    expect(await at(0).unreceipted(agent.id)).toEqual([expect.objectContaining({ requestId: missing })]);
    expect(await at(UNRECEIPTED_REOFFER_AGE_MS + 1_000).reofferPage(agent.id, null)).toEqual({
      statements: [expect.objectContaining({ requestId: missing, dispatchedAtMs: row.createdAt.getTime() })],
      next: null,
    });
    // Older than 10 minutes (no handshake since): still offered, up to the resend window.
    expect((await at(3_600_000).reofferPage(agent.id, null)).statements).toEqual([expect.objectContaining({ requestId: missing })]);
    expect((await at(UNRECEIPTED_RESEND_WINDOW_MS + 1_000).reofferPage(agent.id, null)).statements).toEqual([]);
  });

  it("pages through the re-offer: settlements the agent keeps refusing never hide newer ones", async () => {
    const { agent, ownerId } = await enrolledAgent();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await settled(agent.id, ownerId));
      await new Promise((r) => setTimeout(r, 3));
    }
    const edge = new EdgeReceipts(database.db, hubKey, log, () => Date.now() + UNRECEIPTED_REOFFER_AGE_MS + 1_000);
    // Pages of 2: the oldest two (refused every time, say) are not offered again until the newer ones were.
    const first = await edge.reofferPage(agent.id, null, 2);
    const second = await edge.reofferPage(agent.id, first.next, 2);
    const third = await edge.reofferPage(agent.id, second.next, 2);
    expect([first, second, third].map((p) => p.statements.map((st) => st.requestId))).toEqual([ids.slice(0, 2), ids.slice(2, 4), ids.slice(4)]);
    expect(first.next).not.toBeNull();
    // The last page reached the newest: the next re-offer starts over.
    expect(third.next).toBeNull();
    expect((await edge.reofferPage(agent.id, third.next, 2)).statements.map((st) => st.requestId)).toEqual(ids.slice(0, 2));
  });

  it("seals its record of the request into statements offered again; a receipt whose hub record does not open is logged, its money confirmed", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const pool = new pg.Pool({ connectionString: database.url, max: 2 });
    try {
      const rebuildKey = new Uint8Array(randomBytes(32));
      const edge = new EdgeReceipts(database.db, hubKey, log, Date.now, { sealer: new HubRecordSealer(pool, rebuildKey, log), rebuildKey });
      const requestId = await settled(agent.id, ownerId);
      const [statement] = await edge.unreceipted(agent.id);
      const opened = openHubRecord(rebuildKey, requestId, fromBase64Url(statement!.hubRecord!));
      expect(JSON.parse(opened!)).toMatchObject({ v: 1, reservation: { request_id: requestId, user_id: ownerId, charge_micros: 150 }, record: null });
      // The periodic re-offer seals it too.
      const later = new EdgeReceipts(database.db, hubKey, log, () => Date.now() + UNRECEIPTED_REOFFER_AGE_MS + 1_000, {
        sealer: new HubRecordSealer(pool, rebuildKey, log),
        rebuildKey,
      });
      const [offered] = (await later.reofferPage(agent.id, null)).statements;
      expect(JSON.parse(openHubRecord(rebuildKey, requestId, fromBase64Url(offered!.hubRecord!))!)).toMatchObject({ reservation: { request_id: requestId } });
      // The agent signs the record as it came, and the hub keeps it in the chain with the receipt.
      const chain = new Chain(agent.id, privateKey);
      const [good] = await edge.accept(agent, wire(await chain.next(requestId, { hubRecord: fromBase64Url(statement!.hubRecord!) })));
      expect(good).toMatchObject({ refused: null, disputed: false });
      const kept = await database.db.agentReceipt.findFirst({ where: { agentId: agent.id, seq: 1 } });
      expect(decodeReceipt(new Uint8Array(kept!.body)).hubRecord).toEqual(fromBase64Url(statement!.hubRecord!));
      // One sealed under another key (a gateway with another rebuild key, or made up): the money is the settlement's,
      // confirmed; the record is only logged here, and the rebuild reports it.
      const lines: string[] = [];
      const watched = new EdgeReceipts(
        database.db,
        hubKey,
        createLogger({ proc: "test" }, "warn", (line) => lines.push(line)),
        Date.now,
        {
          sealer: null,
          rebuildKey,
        },
      );
      const other = await settled(agent.id, ownerId);
      const forged = sealHubRecord(new Uint8Array(randomBytes(32)), other, hubRecordJson("{}", null));
      const [bad] = await watched.accept(agent, wire(await chain.next(other, { hubRecord: forged })));
      expect(bad).toMatchObject({ refused: null, disputed: false });
      expect(lines.some((l) => l.includes("ledger.hub_record_unopened") && l.includes(other))).toBe(true);
    } finally {
      await pool.end();
    }
  });

  it("compares the agent's reported tail: behind or different is out of sync, naming the first differing sequence", async () => {
    const { agent, edge, receipts } = await agentWithReceipts(3);
    expect(await edge.reportedTail(agent.id, { seq: 3, hash: toBase64Url(receipts[2]!.hash) })).toBeNull();
    expect(await edge.reportedTail(agent.id, { seq: 4, hash: toBase64Url(new Uint8Array(32)) })).toBeNull();
    expect(await openFlags(agent.id, "ledger_out_of_sync")).toHaveLength(0);
    // The agent lost its last receipt.
    expect(await edge.reportedTail(agent.id, { seq: 2, hash: toBase64Url(receipts[1]!.hash) })).toBe(3);
    const [flag] = await openFlags(agent.id, "ledger_out_of_sync");
    expect(flag!.evidence).toMatchObject({ firstDifferingSeq: 3, hubSeq: 3, agentSeq: 2 });
    const row = await database.db.agent.findUniqueOrThrow({ where: { id: agent.id } });
    expect(row.ledgerTailSeq).toBe(2);
  });

  it("the owner's page summary: both tails, out of sync as the hub's comparison found it, today's earnings by both sides", async () => {
    const { agent, ownerId, edge, receipts } = await agentWithReceipts(3);
    // One settlement has no receipt yet: the hub's figure counts it, the agent's does not.
    await settled(agent.id, ownerId, 300n, 210n);
    const row = () => database.db.agent.findUniqueOrThrow({ where: { id: agent.id } });
    let summary = (await agentLedgerSummaries(database.db, [await row()])).get(agent.id)!;
    expect(summary.hubTail).toEqual({ seq: 3, hash: Buffer.from(receipts[2]!.hash).toString("hex") });
    expect(summary.agentTail).toBeNull();
    expect(summary.outOfSync).toBeNull();
    expect(summary.today).toEqual({ hubEarningMicros: 3n * 105n + 210n, agentEarningMicros: 3n * 105n, receipts: 3, agentUnpriced: 0 });
    // The agent reports an empty chain (its ledger was lost): the hub's comparison raises the flag the page shows.
    await edge.reportedTail(agent.id, { seq: 0, hash: toBase64Url(RECEIPT_GENESIS_HASH) });
    summary = (await agentLedgerSummaries(database.db, [await row()])).get(agent.id)!;
    expect(summary.agentTail).toEqual(expect.objectContaining({ seq: 0 }));
    expect(summary.outOfSync).toEqual(expect.objectContaining({ firstDifferingSeq: 1 }));
  });

  it("ledger verify names the first tampered receipt in the hub's copy", async () => {
    const { agent, privateKey, ownerId } = await enrolledAgent();
    const edge = new EdgeReceipts(database.db, hubKey, log);
    const chain = new Chain(agent.id, privateKey);
    const receipts = [];
    for (let i = 0; i < 6; i++) receipts.push(await chain.next(await settled(agent.id, ownerId)));
    await edge.accept(agent, wire(...receipts));
    const body = new Uint8Array(receipts[3]!.body);
    body[body.length - 30]! ^= 1;
    // An operator with database rights goes around the append-only trigger.
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    await expect(c.query("UPDATE agent_receipts SET body = $1 WHERE agent_id = $2 AND seq = 4", [body, agent.id])).rejects.toThrow(/append-only/);
    await c.query("ALTER TABLE agent_receipts DISABLE TRIGGER agent_receipts_append_only");
    await c.query("UPDATE agent_receipts SET body = $1, hash = $2 WHERE agent_id = $3 AND seq = 4", [body, await receiptHash(body), agent.id]);
    await c.query("ALTER TABLE agent_receipts ENABLE TRIGGER agent_receipts_append_only");
    await c.end();
    const verdict = await verifyStoredChain(database.db, agent.id, null);
    expect(verdict).toMatchObject({ ok: false, firstBadSeq: 4, fault: "bad_signature" });
  });
});
