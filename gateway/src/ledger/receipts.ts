/**
 * The hub's side of the edge ledger (docs/protocol.md, "Receipts"): each agent's chain of signed receipts,
 * verified, compared with the hub's own settlement of the same request, countersigned and kept
 * (`agent_receipts`, append-only). A receipt that does not verify or does not link to the hub's tail is refused
 * and raises a risk flag: the chain stops there. One that links but names a request the hub never dispatched to
 * that agent, or disagrees with the hub's settlement, is kept in the chain as *disputed* — never countersigned,
 * flagged, shown to the owner — so one bad receipt never blocks the receipts after it.
 *
 * The settlement is written first (the request path settles as before, durable through the spool); the hub then
 * sends the agent its SETTLEMENT statement, and the receipt that comes back is checked against the settlement row
 * before it is kept. A receipt can therefore never create or change a charge: it can only confirm one.
 */
import { KeyObject } from "node:crypto";
import {
  bytesEqual,
  CRASH_GAP_MAX_MS,
  CRASH_GAP_SETTLE_LAG_MS,
  decodeReceipt,
  fromBase64Url,
  importReceiptVerifyKey,
  RECEIPT_GENESIS_HASH,
  toBase64Url,
  toHex,
  verifyChain,
  verifyCountersignature,
  type ChainTail,
  type ChainTailMessage,
  type ChainVerdict,
  type Receipt,
  type ReceiptAck,
  type ReceiptBatch,
  type ReceiptRefusal,
  type SettlementStatement,
} from "@wellspring/protocol";
import type { Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import { raiseRiskFlag } from "../risk/flags.ts";
import { openHubRecord, type HubRecordSealer } from "./hub_record.ts";
import { countersignReceiptAsync, receiptHashSync, receiptVerifyKeyObject, verifyReceiptSignatureAsync } from "./receipt_crypto.ts";

/** Risk flag kinds this module raises (subject `agent:<id>`). */
export const LEDGER_OUT_OF_SYNC = "ledger_out_of_sync";
export const RECEIPT_REFUSED = "receipt_refused";
/** A receipt for a request the hub has no settlement for yet is asked again (retry) for this long after it ended, ms. */
export const RECEIPT_SETTLEMENT_WAIT_MS = 600_000;
/**
 * How long one batch's transaction may run, and wait for a connection, ms. Prisma's defaults (5 s, 2 s) were
 * within reach of a full batch on a loaded machine (256 receipts took 1.6–3.5 s at load ~19): a batch that cannot
 * finish in time is answered `retry` whole, and the backlog that brought it keeps the next batch full, so the chain
 * would stop moving for as long as the load lasts. The advisory lock it holds is this agent's alone.
 */
export const RECEIPTS_TRANSACTION_TIMEOUT_MS = 60_000;
export const RECEIPTS_TRANSACTION_MAX_WAIT_MS = 20_000;
/** Largest sequence number the hub stores (PostgreSQL integer). */
export const RECEIPT_SEQ_MAX = 2_147_483_647;
/** Longest dispute detail kept on a disputed receipt and in its flag, characters. */
export const RECEIPT_DISPUTE_DETAIL_CHARS_MAX = 200;
/** Most statements sent again after one handshake (settlements without a receipt). */
export const UNRECEIPTED_RESEND_MAX = 1000;
/** How far back settlements without a receipt are sent again (after a handshake, and periodically), ms. */
export const UNRECEIPTED_RESEND_WINDOW_MS = 86_400_000;
/**
 * Most statements one periodic re-offer sends a live agent: one page of its unreceipted settlements of the
 * resend window, continuing where the last page ended (`ReofferCursor`) and starting over after the newest.
 */
export const UNRECEIPTED_REOFFER_PAGE_MAX = 1000;
/** A settlement younger than this is not re-offered periodically (its statement may be in flight), ms. */
export const UNRECEIPTED_REOFFER_AGE_MS = 5_000;

/** Where a live agent's periodic re-offer continues: the last settlement the previous page offered. */
export interface ReofferCursor {
  settledAt: Date;
  requestId: string;
}

interface UnreceiptedRow {
  request_id: string;
  model: string | null;
  charge_micros: bigint | null;
  earning_micros: bigint | null;
  price_ver: number | null;
  tier_bps: number | null;
  input_tokens: number | null;
  output_tokens: number | null;
  cached_input_tokens: number | null;
  audio_seconds: number | null;
  images: number | null;
  characters: number | null;
  estimated: boolean;
  end_cause: string;
  created_at: Date;
  settled_at: Date;
}

/** A settlement without a receipt, as the statement the agent signs (with the hub's dispatch time). */
function toStatement(r: UnreceiptedRow): SettlementStatement {
  const usage = {
    inputTokens: r.input_tokens ?? 0,
    outputTokens: r.output_tokens ?? 0,
    cachedInputTokens: r.cached_input_tokens ?? 0,
    audioSeconds: r.audio_seconds ?? 0,
    images: r.images ?? 0,
    characters: r.characters ?? 0,
  };
  return {
    requestId: r.request_id,
    model: r.model ?? "",
    reportedUsage: null,
    chargedUsage: usage,
    estimated: r.estimated,
    priceVer: r.price_ver ?? 0,
    tierBps: r.tier_bps ?? 0,
    chargeMicros: String(r.charge_micros ?? 0n),
    earningMicros: String(r.earning_micros ?? 0n),
    endCause: r.end_cause as SettlementStatement["endCause"],
    dispatchedAtMs: r.created_at.getTime(),
  };
}

export interface HubReceiptKey {
  privateKey: CryptoKey;
  /** Raw 32-byte Ed25519 public key, base64url: what owners use to check the hub's countersignatures. */
  publicKey: string;
}

interface AgentKey {
  id: string;
  publicKey: string;
}

export class EdgeReceipts {
  /** Verify keys by agent public key (imported once). */
  readonly #keys = new Map<string, KeyObject>();
  /** The hub's receipt key as node:crypto signs with it (receipt_crypto.ts). */
  readonly #countersignKey: KeyObject;

  constructor(
    private readonly db: Db,
    private readonly hubKey: HubReceiptKey,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** Seals the hub's record into statements offered again, and checks that the record a receipt carries opens. */
    private readonly hubRecords: { sealer: HubRecordSealer | null; rebuildKey: Uint8Array | null } = { sealer: null, rebuildKey: null },
  ) {
    this.#countersignKey = KeyObject.from(hubKey.privateKey);
  }

  #verifyKey(publicKey: string): KeyObject | null {
    const cached = this.#keys.get(publicKey);
    if (cached) return cached;
    const key = receiptVerifyKeyObject(publicKey);
    if (key) this.#keys.set(publicKey, key);
    return key;
  }

  /** The hub's tail of an agent's chain. */
  async tail(agentId: string): Promise<ChainTail> {
    const last = await this.db.agentReceipt.findFirst({ where: { agentId }, orderBy: { seq: "desc" }, select: { seq: true, hash: true } });
    return last ? { seq: last.seq, hash: new Uint8Array(last.hash) } : { seq: 0, hash: RECEIPT_GENESIS_HASH };
  }

  /**
   * Settlements of this agent's requests that have no receipt yet (the statement was lost with the connection,
   * or the agent died before it signed) of the last 24 h, oldest first, at most `limit`: sent again after each
   * handshake. The agent signs those it recorded serving, and those dispatched while its record was lost in a
   * crash, marked as such (docs/protocol.md, "Streams served before a crash"). Read through the owner's
   * settlement index.
   */
  async unreceipted(agentId: string, limit = UNRECEIPTED_RESEND_MAX): Promise<SettlementStatement[]> {
    return this.#sealed((await this.#unreceiptedRows(agentId, this.now(), null, limit)).map(toStatement));
  }

  /**
   * One page of the periodic re-offer to a live agent: its unreceipted settlements of the last 24 h that are at
   * least 5 s old (younger ones' statements may be in flight), after `after`, oldest first. `next` is where the
   * following page starts; null once the page reached the newest, so the next re-offer starts over. Paging, not
   * a fixed recent window: settlements the agent refuses (it holds no record of them) never hide newer ones, and
   * older ones are offered again without waiting for a handshake.
   */
  async reofferPage(
    agentId: string,
    after: ReofferCursor | null,
    limit = UNRECEIPTED_REOFFER_PAGE_MAX,
  ): Promise<{ statements: SettlementStatement[]; next: ReofferCursor | null }> {
    const rows = await this.#unreceiptedRows(agentId, this.now() - UNRECEIPTED_REOFFER_AGE_MS, after, limit);
    const last = rows.at(-1);
    return {
      statements: await this.#sealed(rows.map(toStatement)),
      next: rows.length === limit && last ? { settledAt: last.settled_at, requestId: last.request_id } : null,
    };
  }

  /** Statements offered again carry the hub's sealed record when this hub seals them. */
  #sealed(statements: SettlementStatement[]): Promise<SettlementStatement[]> {
    return this.hubRecords.sealer ? this.hubRecords.sealer.sealAll(statements) : Promise.resolve(statements);
  }

  /** Settled in the resend window up to `toMs`, after the cursor, without a receipt, by (settled_at, request_id). */
  async #unreceiptedRows(agentId: string, toMs: number, after: ReofferCursor | null, limit: number): Promise<UnreceiptedRow[]> {
    const from = new Date(this.now() - UNRECEIPTED_RESEND_WINDOW_MS);
    const afterAt = after && after.settledAt > from ? after.settledAt : from;
    const afterId = after && after.settledAt > from ? after.requestId : "";
    return this.db.$queryRaw<UnreceiptedRow[]>`
      SELECT r.request_id, r.model, r.charge_micros, r.earning_micros, r.price_ver, r.tier_bps, r.input_tokens, r.output_tokens,
             r.cached_input_tokens, r.audio_seconds, r.images, r.characters, r.estimated, r.end_cause::text AS end_cause, r.created_at,
             r.settled_at
        FROM reservations r
       WHERE r.owner_id = (SELECT g.owner_id FROM agents g WHERE g.id = ${agentId})
         AND r.settled_at >= ${afterAt} AND (r.settled_at, r.request_id) > (${afterAt}, ${afterId}) AND r.settled_at <= ${new Date(toMs)}
         AND r.agent_id = ${agentId} AND r.status = 'settled' AND r.charge_micros IS NOT NULL AND r.price_ver IS NOT NULL
         AND (r.charge_micros > 0 OR r.earning_micros > 0)
         AND NOT EXISTS (SELECT 1 FROM agent_receipts a WHERE a.request_id = r.request_id)
       ORDER BY r.settled_at, r.request_id LIMIT ${limit}`;
  }

  /**
   * RECEIPT or CLAIM: answered with one RECEIPT_ACK each, in the order they came. Never throws for bad input.
   * Signatures are checked first; the receipts that verify are then linked in sequence order, compared with their
   * settlements and kept in one transaction (one agent's chain at a time across gateways), each as if checked
   * alone in turn.
   */
  async accept(agent: AgentKey, batch: ReceiptBatch): Promise<ReceiptAck[]> {
    const acks: (ReceiptAck | null)[] = [];
    const signed: Signed[] = [];
    for (const wire of batch.receipts) {
      const checked = await this.#checkSignature(agent, wire);
      if ("ack" in checked) acks.push(checked.ack);
      else {
        signed.push({ ...checked, index: acks.length });
        acks.push(null);
      }
    }
    if (signed.length === 0) return acks as ReceiptAck[];
    // Judged in chain order, whatever order they came in (claims, fresh receipts and answers to re-offered
    // statements interleave on the connection): in arrival order, a receipt that came before the one it follows
    // was "ahead of the tail" and waited for the next claim, so a batch out of order stored as little as one.
    // The sort is stable: repeats of one sequence keep their order. Acknowledgements go back in arrival order.
    const inChainOrder = [...signed].sort((a, b) => a.receipt.seq - b.receipt.seq);
    let verdicts: Verdict[];
    try {
      verdicts = await this.db.$transaction((tx) => this.#link(tx, agent.id, inChainOrder), {
        timeout: RECEIPTS_TRANSACTION_TIMEOUT_MS,
        maxWait: RECEIPTS_TRANSACTION_MAX_WAIT_MS,
      });
    } catch (error) {
      this.log.warn("ledger.receipt_not_stored", { agentId: agent.id, seqs: inChainOrder.map((s) => s.receipt.seq), error });
      verdicts = inChainOrder.map(() => ({ refused: "retry" as const, detail: "" }));
    }
    for (const [i, s] of inChainOrder.entries()) acks[s.index] = await this.#answer(agent, s, verdicts[i]!);
    return acks as ReceiptAck[];
  }

  /** Decodes a receipt and checks its signature, sender and sequence; an ack when it is refused here. */
  async #checkSignature(agent: AgentKey, wire: ReceiptBatch["receipts"][number]): Promise<{ ack: ReceiptAck } | Omit<Signed, "index">> {
    let body: Uint8Array;
    let signature: Uint8Array;
    let receipt: Receipt;
    try {
      body = fromBase64Url(wire.body);
      signature = fromBase64Url(wire.signature);
      receipt = decodeReceipt(body);
    } catch (error) {
      await this.#flag(agent.id, RECEIPT_REFUSED, {
        refused: "invalid",
        kept: false,
        detail: (error as Error).message.slice(0, RECEIPT_DISPUTE_DETAIL_CHARS_MAX),
      });
      return { ack: { seq: 1, hash: "", countersignature: null, refused: "invalid", disputed: false } };
    }
    const hash = receiptHashSync(body);
    const s = { body, signature, receipt, hash };
    const key = this.#verifyKey(agent.publicKey);
    if (!key || !(await verifyReceiptSignatureAsync(key, hash, signature)))
      return { ack: await this.#refuse(agent, s, "invalid", "the agent's signature does not verify") };
    if (receipt.agentId !== agent.id) return { ack: await this.#refuse(agent, s, "invalid", `the receipt names agent ${receipt.agentId}`) };
    if (receipt.seq > RECEIPT_SEQ_MAX) return { ack: await this.#refuse(agent, s, "invalid", "sequence number beyond what the hub stores") };
    // A hub record opens only with the hub's rebuild key and for its own request. One that does not (altered by the
    // agent, or sealed by a gateway with another key: every gateway of a hub must share it) leaves the money as the
    // settlement says, so it is not a dispute; it is logged here and the rebuild reports it.
    const rebuildKey = this.hubRecords.rebuildKey;
    if (receipt.hubRecord !== undefined && rebuildKey !== null && openHubRecord(rebuildKey, receipt.requestId, receipt.hubRecord) === null)
      this.log.warn("ledger.hub_record_unopened", { agentId: agent.id, seq: receipt.seq, requestId: receipt.requestId });
    return s;
  }

  /**
   * Not kept (it does not verify or does not link): the chain stops here until an operator resolves it, so the
   * flag says so (`kept: false`) and the owner's page shows it.
   */
  async #refuse(agent: AgentKey, s: Omit<Signed, "index">, refused: ReceiptRefusal, detail: string): Promise<ReceiptAck> {
    const { receipt } = s;
    if (refused !== "retry") await this.#flag(agent.id, RECEIPT_REFUSED, { refused, kept: false, seq: receipt.seq, requestId: receipt.requestId, detail });
    this.log.warn("ledger.receipt_refused", { agentId: agent.id, seq: receipt.seq, requestId: receipt.requestId, refused, detail });
    return { seq: receipt.seq, hash: toBase64Url(s.hash), countersignature: null, refused, disputed: false };
  }

  /**
   * The chain link, the settlement each receipt confirms and the stored rows are one unit: checked and written in
   * one transaction, one agent's chain at a time across gateways (docs/ARCHITECTURE.md, "The owner keeps the
   * proof"). The rows the batch needs are read at once; each receipt is then judged in order against them and
   * the receipts before it, and the kept ones are written in one statement.
   */
  async #link(tx: Tx, agentId: string, batch: Signed[]): Promise<Verdict[]> {
    await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext(${`receipts:${agentId}`}))`;
    const seqs = batch.map((s) => s.receipt.seq);
    const requestIds = batch.map((s) => s.receipt.requestId);
    // What the batch needs, read in one statement (after the lock, so it sees every receipt stored before it): the
    // receipts already held at its sequence numbers, the chain's tail, the settlements it confirms and any receipt
    // already naming its requests. Bytes travel as hex and money as text inside the JSON.
    const [read] = await tx.$queryRaw<{ at_seq: string | null; last: string | null; settled: string | null; by_request: string | null }[]>`
      SELECT
        (SELECT json_agg(json_build_object('seq', a.seq, 'hash', encode(a.hash, 'hex'), 'disputed', a.disputed,
                'disputeDetail', a.dispute_detail, 'countersignature', encode(a.countersignature, 'hex')))
           FROM agent_receipts a WHERE a.agent_id = ${agentId} AND a.seq = ANY(${seqs}::int[]))::text AS at_seq,
        (SELECT json_build_object('seq', a.seq, 'hash', encode(a.hash, 'hex'))
           FROM agent_receipts a WHERE a.agent_id = ${agentId} ORDER BY a.seq DESC LIMIT 1)::text AS last,
        (SELECT json_agg(json_build_object('requestId', r.request_id, 'status', r.status, 'agentId', r.agent_id,
                'createdAt', (extract(epoch FROM r.created_at) * 1000)::bigint::text, 'model', r.model,
                'chargeMicros', r.charge_micros::text, 'earningMicros', r.earning_micros::text, 'priceVer', r.price_ver,
                'tierBps', r.tier_bps, 'inputTokens', r.input_tokens, 'outputTokens', r.output_tokens, 'estimated', r.estimated))
           FROM reservations r WHERE r.request_id = ANY(${requestIds}::text[]))::text AS settled,
        (SELECT json_agg(json_build_object('requestId', a.request_id, 'agentId', a.agent_id, 'seq', a.seq))
           FROM agent_receipts a WHERE a.request_id = ANY(${requestIds}::text[]))::text AS by_request`;
    const atSeqRows = parseRows<{ seq: number; hash: string; disputed: string | null; disputeDetail: string | null; countersignature: string | null }>(
      read?.at_seq,
    );
    const last = read?.last ? (JSON.parse(read.last) as { seq: number; hash: string }) : null;
    const atSeq = new Map<number, HeldReceipt>(
      atSeqRows.map((r) => [
        r.seq,
        {
          hash: hexBytes(r.hash),
          disputed: r.disputed,
          disputeDetail: r.disputeDetail,
          countersignature: r.countersignature === null ? null : hexBytes(r.countersignature),
        },
      ]),
    );
    const settledBy = new Map(
      parseRows<LinkSettlementJson>(read?.settled).map((r) => [
        r.requestId,
        {
          ...r,
          createdAt: new Date(Number(r.createdAt)),
          chargeMicros: r.chargeMicros === null ? null : BigInt(r.chargeMicros),
          earningMicros: r.earningMicros === null ? null : BigInt(r.earningMicros),
        },
      ]),
    );
    const byRequest = new Map(
      parseRows<{ requestId: string; agentId: string; seq: number }>(read?.by_request).map((r) => [r.requestId, { agentId: r.agentId, seq: r.seq }]),
    );
    let tail = last ? { seq: last.seq, hash: hexBytes(last.hash) } : { seq: 0, hash: RECEIPT_GENESIS_HASH };
    const rows: Extract<NonNullable<Parameters<Tx["agentReceipt"]["createMany"]>[0]>["data"], unknown[]> = [];
    const verdicts: Verdict[] = [];
    for (const { receipt, hash, body, signature } of batch) {
      const held = atSeq.get(receipt.seq);
      if (held) {
        // A claim for a receipt the hub already holds: answered as before, never stored twice.
        if (bytesEqual(held.hash, hash)) {
          verdicts.push(
            held.disputed || !held.countersignature
              ? { disputed: disputeKind(held.disputed), detail: held.disputeDetail ?? "", again: true }
              : { again: held.countersignature },
          );
        } else verdicts.push({ refused: "fork", detail: `the hub holds another receipt at sequence ${receipt.seq}` });
        continue;
      }
      if (receipt.seq > tail.seq + 1) {
        verdicts.push({ refused: "retry", detail: `sequence ${receipt.seq} is ahead of the hub's tail ${tail.seq}` });
        continue;
      }
      if (receipt.seq <= tail.seq || !bytesEqual(receipt.prevHash, tail.hash)) {
        verdicts.push({ refused: "fork", detail: `the receipt does not follow the hub's tail ${tail.seq}` });
        continue;
      }
      const settled = settledBy.get(receipt.requestId) ?? null;
      if (
        (!settled || settled.status !== "settled") &&
        this.now() - receipt.endedAtMs < RECEIPT_SETTLEMENT_WAIT_MS &&
        (!settled || settled.agentId === agentId)
      ) {
        verdicts.push({ refused: "retry", detail: "no settlement yet" });
        continue;
      }
      // From here the receipt links and is signed: it is kept, confirmed or disputed.
      const other = byRequest.get(receipt.requestId);
      const dispute = other
        ? { kind: "mismatch" as const, detail: `request already has receipt ${other.seq} of ${other.agentId}` }
        : await settlementDispute(tx, agentId, receipt, settled);
      const ownsRequest = !other && settled?.agentId === agentId;
      const countersignature = dispute ? null : await countersignReceiptAsync(this.#countersignKey, hash);
      const detail = dispute?.detail.slice(0, RECEIPT_DISPUTE_DETAIL_CHARS_MAX) ?? null;
      // A disputed receipt for a request that is not this agent's names it only in its body: it must never
      // stop the receipt of the agent that served it.
      const requestId = dispute && !ownsRequest ? null : receipt.requestId;
      rows.push({
        agentId,
        seq: receipt.seq,
        requestId,
        body: body as Uint8Array<ArrayBuffer>,
        hash: hash as Uint8Array<ArrayBuffer>,
        signature: signature as Uint8Array<ArrayBuffer>,
        countersignature: countersignature as Uint8Array<ArrayBuffer> | null,
        disputed: dispute?.kind ?? null,
        disputeDetail: detail,
        chargeMicros: receipt.chargeMicros,
        earningMicros: receipt.earningMicros,
        agentEarningMicros: receipt.agentEarningMicros,
        endedAt: new Date(receipt.endedAtMs),
      });
      atSeq.set(receipt.seq, { hash, disputed: dispute?.kind ?? null, disputeDetail: detail, countersignature });
      if (requestId !== null) byRequest.set(requestId, { agentId, seq: receipt.seq });
      tail = { seq: receipt.seq, hash };
      verdicts.push(dispute ? { disputed: dispute.kind, detail: detail ?? "", again: false } : { stored: countersignature! });
    }
    if (rows.length) await tx.agentReceipt.createMany({ data: rows });
    return verdicts;
  }

  /** The RECEIPT_ACK for one receipt's verdict, with the flags and log lines it calls for. */
  async #answer(agent: AgentKey, s: Signed, verdict: Verdict): Promise<ReceiptAck> {
    const { receipt, hash } = s;
    if ("disputed" in verdict) {
      if (!verdict.again) {
        await this.#flag(agent.id, RECEIPT_REFUSED, {
          refused: verdict.disputed,
          kept: true,
          seq: receipt.seq,
          requestId: receipt.requestId,
          detail: verdict.detail,
        });
        this.log.warn("ledger.receipt_disputed", {
          agentId: agent.id,
          seq: receipt.seq,
          requestId: receipt.requestId,
          refused: verdict.disputed,
          detail: verdict.detail,
        });
      }
      return { seq: receipt.seq, hash: toBase64Url(hash), countersignature: null, refused: verdict.disputed, disputed: true };
    }
    if ("again" in verdict) return { seq: receipt.seq, hash: toBase64Url(hash), countersignature: toBase64Url(verdict.again), refused: null, disputed: false };
    if ("refused" in verdict) return this.#refuse(agent, s, verdict.refused, verdict.detail);
    const countersignature = verdict.stored;
    if (receipt.agentEarningMicros >= 0n && receipt.agentEarningMicros !== receipt.earningMicros)
      await this.#flag(agent.id, RECEIPT_REFUSED, {
        refused: "earning_disagrees",
        kept: true,
        seq: receipt.seq,
        requestId: receipt.requestId,
        detail: `agent computes ${receipt.agentEarningMicros} µUSD, the hub settled ${receipt.earningMicros}`,
      });
    return { seq: receipt.seq, hash: toBase64Url(hash), countersignature: toBase64Url(countersignature), refused: null, disputed: false };
  }

  /**
   * The agent's CHAIN_TAIL: kept on the agent's row (the owner's page shows it beside the hub's) and compared.
   * Returns the first sequence number at which the two chains may differ, or null when they agree.
   */
  async reportedTail(agentId: string, reported: ChainTailMessage): Promise<number | null> {
    let reportedHash: Uint8Array;
    try {
      reportedHash = fromBase64Url(reported.hash);
    } catch {
      reportedHash = new Uint8Array(0);
    }
    await this.db.agent.update({
      where: { id: agentId },
      data: { ledgerTailSeq: Math.min(reported.seq, RECEIPT_SEQ_MAX), ledgerTailHash: toHex(reportedHash), ledgerReportedAt: new Date(this.now()) },
    });
    let differs: number | null = null;
    const hub = await this.tail(agentId);
    if (reported.seq < hub.seq) differs = reported.seq + 1;
    else if (reported.seq === hub.seq && !bytesEqual(reportedHash, hub.hash)) differs = hub.seq;
    if (differs !== null) {
      await this.#flag(agentId, LEDGER_OUT_OF_SYNC, { firstDifferingSeq: differs, hubSeq: hub.seq, agentSeq: reported.seq, agentHash: toHex(reportedHash) }, 3);
      this.log.error("ledger.out_of_sync", { agentId, firstDifferingSeq: differs, hubSeq: hub.seq, agentSeq: reported.seq });
    }
    return differs;
  }

  async #flag(agentId: string, kind: string, evidence: Record<string, unknown>, severity: 1 | 2 | 3 = 2): Promise<void> {
    await raiseRiskFlag(this.db, { kind, subject: `agent:${agentId}`, severity, evidence }).catch((error: unknown) =>
      this.log.error("ledger.flag_failed", { agentId, kind, error }),
    );
  }
}

/**
 * `npm run admin -- ledger verify --agent ID`: the hub's copy of an agent's chain, from its first receipt (canonical
 * bodies, stored hashes, the agent's signatures, sequence and links), and the hub's countersignatures with `hubKey`.
 */
export async function verifyStoredChain(
  db: Db,
  agentId: string,
  hubKey: CryptoKey | null,
): Promise<ChainVerdict | { ok: false; fault: "unknown_agent" | "bad_countersignature"; firstBadSeq: number; detail: string }> {
  const agent = await db.agent.findUnique({ where: { id: agentId }, select: { publicKey: true } });
  const key = agent ? await importReceiptVerifyKey(agent.publicKey) : null;
  if (!key) return { ok: false, fault: "unknown_agent", firstBadSeq: 0, detail: `no agent ${agentId}` };
  const rows = await db.agentReceipt.findMany({
    where: { agentId },
    orderBy: { seq: "asc" },
    select: { body: true, hash: true, signature: true, countersignature: true, disputed: true },
  });
  const entries = rows.map((r) => ({ body: new Uint8Array(r.body), hash: new Uint8Array(r.hash), signature: new Uint8Array(r.signature) }));
  const verdict = await verifyChain(entries, { agentId, key });
  if (!verdict.ok || !hubKey) return verdict;
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    // A disputed receipt is kept in the chain and never countersigned; any other must carry a good countersignature.
    if (row.disputed !== null && row.countersignature === null) continue;
    if (!row.countersignature || !(await verifyCountersignature(hubKey, entries[i]!.hash, new Uint8Array(row.countersignature))))
      return { ok: false, fault: "bad_countersignature", firstBadSeq: i + 1, detail: "the hub's countersignature does not verify" };
  }
  return verdict;
}

/** Why a kept receipt is disputed. */
type DisputeKind = "mismatch" | "not_dispatched";

function disputeKind(stored: string | null): DisputeKind {
  return stored === "not_dispatched" ? "not_dispatched" : "mismatch";
}

type Tx = Parameters<Parameters<Db["$transaction"]>[0]>[0];

/** A receipt the hub already holds at a sequence number a batch names. */
interface HeldReceipt {
  hash: Uint8Array;
  disputed: string | null;
  disputeDetail: string | null;
  countersignature: Uint8Array | null;
}

/** A settlement row as the batch's read returns it (JSON: the time in epoch ms and money as text). */
interface LinkSettlementJson extends Omit<SettledRow, "chargeMicros" | "earningMicros"> {
  requestId: string;
  status: string;
  agentId: string | null;
  createdAt: string;
  chargeMicros: string | null;
  earningMicros: string | null;
}

function parseRows<T>(json: string | null | undefined): T[] {
  return json ? (JSON.parse(json) as T[]) : [];
}

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}

/** A receipt whose signature verified, where its ack goes in the batch's answer. */
interface Signed {
  body: Uint8Array;
  signature: Uint8Array;
  receipt: Receipt;
  hash: Uint8Array;
  index: number;
}

/** What the chain check decided for one receipt. */
type Verdict =
  { stored: Uint8Array } | { refused: ReceiptRefusal; detail: string } | { again: Uint8Array } | { disputed: DisputeKind; detail: string; again: boolean };

/**
 * Why the hub disputes a receipt that links to its chain; null when it confirms it. It must name a settlement of
 * this agent's with the same content; a receipt signed on the hub's word after a crash (`witness: dispatched`) must
 * carry the hub's own dispatch time, and a session of this agent must have ended at most CRASH_GAP_MAX_MS after
 * that dispatch (the agent's record of a stream is lost only in a crash that soon after the stream began) — or at
 * most CRASH_GAP_SETTLE_LAG_MS before it, since a leased request's row (and so its time) is written at settlement.
 */
async function settlementDispute(
  tx: Tx,
  agentId: string,
  receipt: Receipt,
  settled: (SettledRow & { status: string; agentId: string | null; createdAt: Date }) | null,
): Promise<{ kind: DisputeKind; detail: string } | null> {
  if (!settled || settled.status !== "settled") return { kind: "not_dispatched", detail: "the hub has no settlement of this request" };
  if (settled.agentId !== agentId) return { kind: "not_dispatched", detail: "the request was not dispatched to this agent" };
  const differs = settlementDifference(receipt, settled);
  if (differs) return { kind: "mismatch", detail: differs };
  if (receipt.witness !== "dispatched") return null;
  const dispatchedAtMs = settled.createdAt.getTime();
  if (receipt.startedAtMs !== dispatchedAtMs || receipt.endedAtMs !== dispatchedAtMs)
    return { kind: "mismatch", detail: `the crash-witnessed receipt's time ${receipt.startedAtMs} is not the hub's dispatch time ${dispatchedAtMs}` };
  const ended = await tx.agentSessionEnd.findFirst({
    where: { agentId, endedAt: { gte: new Date(dispatchedAtMs - CRASH_GAP_SETTLE_LAG_MS), lte: new Date(dispatchedAtMs + CRASH_GAP_MAX_MS) } },
    select: { id: true },
  });
  if (!ended)
    return {
      kind: "not_dispatched",
      detail: `signed on a crash gap, but no session of this agent ended from ${CRASH_GAP_SETTLE_LAG_MS} ms before to ${CRASH_GAP_MAX_MS} ms after the dispatch`,
    };
  return null;
}

interface SettledRow {
  model: string | null;
  chargeMicros: bigint | null;
  earningMicros: bigint | null;
  priceVer: number | null;
  tierBps: number | null;
  inputTokens: number | null;
  outputTokens: number | null;
  estimated: boolean;
}

/** What differs between a receipt and the hub's settlement of its request; null when they agree. */
export function settlementDifference(r: Receipt, s: SettledRow): string | null {
  const pairs: [string, unknown, unknown][] = [
    ["model", r.model, s.model],
    ["chargeMicros", r.chargeMicros, s.chargeMicros ?? 0n],
    ["earningMicros", r.earningMicros, s.earningMicros ?? 0n],
    ["priceVer", r.priceVer, s.priceVer ?? 0],
    ["tierBps", r.tierBps, s.tierBps ?? 0],
    ["inputTokens", r.chargedUsage.inputTokens, s.inputTokens ?? 0],
    ["outputTokens", r.chargedUsage.outputTokens, s.outputTokens ?? 0],
    ["estimated", r.estimated, s.estimated],
  ];
  const bad = pairs.filter(([, a, b]) => a !== b).map(([name, a, b]) => `${name} ${String(a)} ≠ ${String(b)}`);
  return bad.length ? `the receipt differs from the settlement: ${bad.join(", ")}` : null;
}
