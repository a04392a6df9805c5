/**
 * The agent's side of the receipt exchange (docs/protocol.md, "Receipts"): it remembers the streams it served,
 * turns the hub's SETTLEMENT statement for one of them into a signed receipt in its ledger, records the hub's
 * acknowledgements, re-sends what the hub never acknowledged (CLAIM) and compares chain tails (CHAIN_TAIL).
 *
 * Who computes the charge: the hub. The user's charge depends on the user's plan and, for streams that ended
 * early, on what the user's client received — the agent knows neither (and must not: plans are the hub's
 * business with its users). So the receipt carries the hub's figures, and the agent adds its own computation of
 * the owner's earning from its copy of the price table (`agentEarningMicros`): a statement that pays the owner
 * less than the table says is signed as it is, with the disagreement in the signed receipt and in the agent's
 * log, where the owner and both verifiers see it.
 */
import {
  bytesEqual,
  fromBase64Url,
  officialCostMicros,
  ownerEarningMicros,
  toBase64Url,
  type ChainTail,
  type ChainTailMessage,
  type PriceTableMessage,
  type ReceiptAck,
  type ReceiptUsage,
  type SettlementStatement,
  type Provider,
  type SignedReceipt,
} from "../../protocol/src/mod.ts";
import type { AgentLedger, KeptReceipt } from "./ledger.ts";
import type { Log } from "./log.ts";

/** Streams remembered until their settlement statement arrives, most. The oldest is forgotten first. */
export const SERVED_STREAMS_MAX = 100_000;
/** How long a served stream waits for its statement before it is forgotten, ms. */
export const SERVED_STREAM_TTL_MS = 3_600_000;
/** Most receipts re-sent in one CLAIM message after a reconnect. */
export const CLAIM_RECEIPTS_MAX = 256;

interface Served {
  provider: Provider;
  startedAtMs: number;
  endedAtMs: number;
}

/** A stream's end as the agent saw it: which upstream served it and when (UTC epoch ms). */
export interface ServedStream extends Served {
  requestId: string;
}

/**
 * The owner's earning by the official price table, with the hub's own formula (protocol/src/pricing.ts):
 * ⌊official cost × tier bps / 10,000⌋. −1 when the table is not the version the request was priced with, or has
 * no price for the model.
 */
export function earningByTable(table: PriceTableMessage | null, provider: Provider | null, s: SettlementStatement): bigint {
  if (!table || table.ver !== s.priceVer) return -1n;
  // Without the provider (a stream whose record was lost), the model must name one price.
  const prices = table.prices.filter((p) => (provider === null || p.provider === provider) && p.model === s.model);
  const price = prices.length === 1 ? prices[0] : undefined;
  if (!price) return -1n;
  const official = officialCostMicros(s.chargedUsage, {
    inputMicrosPerMTok: BigInt(price.inputMicrosPerMTok),
    outputMicrosPerMTok: BigInt(price.outputMicrosPerMTok),
    cachedInputMicrosPerMTok: BigInt(price.cachedInputMicrosPerMTok),
    audioSecondMicros: BigInt(price.audioSecondMicros ?? "0"),
    imageMicros: BigInt(price.imageMicros ?? "0"),
    characterMicrosPerM: BigInt(price.characterMicrosPerM ?? "0"),
  });
  return ownerEarningMicros(official, BigInt(s.tierBps));
}

export type StatementOutcome = { signed: SignedReceipt } | { refused: "unknown_request" };

export class ReceiptClerk {
  readonly #served = new Map<string, Served>();
  #outOfSync: { firstDifferingSeq: number } | null = null;

  constructor(
    private readonly ledger: AgentLedger,
    private readonly prices: () => PriceTableMessage | null,
    private readonly log: Log,
    private readonly now: () => number = Date.now,
  ) {}

  /** Set when the hub's chain and this agent's differ: the agent takes no new work until an operator looks. */
  get outOfSync(): { firstDifferingSeq: number } | null {
    return this.#outOfSync;
  }

  get tail(): ChainTail {
    return this.ledger.tail;
  }

  /** A stream started here: kept durably (off its path), so a statement after a crash still finds it. */
  started(requestId: string, provider: Provider, startedAtMs: number): void {
    this.ledger.served({ requestId, provider, startedAtMs, endedAtMs: null });
  }

  /** A stream ended here: remember it until the hub's statement for it arrives. */
  served(s: ServedStream): void {
    this.ledger.served(s);
    this.#forgetStale();
    if (this.#served.size >= SERVED_STREAMS_MAX) this.#served.delete(this.#served.keys().next().value!);
    this.#served.set(s.requestId, { provider: s.provider, startedAtMs: s.startedAtMs, endedAtMs: s.endedAtMs });
  }

  #forgetStale(): void {
    const cutoff = this.now() - SERVED_STREAM_TTL_MS;
    for (const [id, s] of this.#served) {
      if (s.endedAtMs >= cutoff) break;
      this.#served.delete(id);
    }
  }

  /**
   * The hub settled a stream: sign and keep its receipt (durable before this resolves). The agent signs what it
   * recorded serving; and, marked `dispatched`, a statement for a request the hub dispatched to it inside a crash
   * gap of its ledger (its record of that stream died with the process: see `CrashGap`). Anything else is
   * refused. A repeated statement gets the receipt already kept.
   */
  async settle(s: SettlementStatement): Promise<StatementOutcome> {
    const kept = this.ledger.byRequest(s.requestId);
    const served = this.#served.get(s.requestId) ?? this.#durablyServed(s.requestId);
    const lostInCrash = !served && !kept && s.dispatchedAtMs !== undefined && this.ledger.inCrashGap(s.dispatchedAtMs);
    if (!served && !kept && !lostInCrash) {
      this.log.warn("ledger.statement_unknown_request", { requestId: s.requestId });
      return { refused: "unknown_request" };
    }
    if (lostInCrash) this.log.warn("ledger.statement_in_crash_gap", { requestId: s.requestId, dispatchedAtMs: s.dispatchedAtMs });
    const agentEarningMicros = served || lostInCrash ? earningByTable(this.prices(), served?.provider ?? null, s) : -1n;
    const earningMicros = BigInt(s.earningMicros);
    if (agentEarningMicros >= 0n && agentEarningMicros !== earningMicros)
      this.log.error("ledger.earning_disagrees", {
        requestId: s.requestId,
        hubEarningMicros: s.earningMicros,
        agentEarningMicros: agentEarningMicros.toString(),
        priceVer: s.priceVer,
        message: "The hub's settlement pays a different earning than this agent's price table gives; the receipt records both",
      });
    const signed = await this.ledger.append({
      requestId: s.requestId,
      model: s.model,
      reportedUsage: s.reportedUsage,
      chargedUsage: s.chargedUsage satisfies ReceiptUsage,
      estimated: s.estimated,
      priceVer: s.priceVer,
      tierBps: s.tierBps,
      chargeMicros: BigInt(s.chargeMicros),
      earningMicros,
      agentEarningMicros,
      startedAtMs: served?.startedAtMs ?? s.dispatchedAtMs ?? 0,
      endedAtMs: served?.endedAtMs ?? s.dispatchedAtMs ?? 0,
      endCause: s.endCause,
      ...(lostInCrash ? { witness: "dispatched" as const } : {}),
      // The hub's sealed record of the request (opaque here): kept and signed so the hub's books can be rebuilt.
      ...(s.hubRecord ? { hubRecord: fromBase64Url(s.hubRecord) } : {}),
    });
    this.#served.delete(s.requestId);
    return { signed };
  }

  /** A stream the agent began before a restart: its end is unknown when the agent died during it. */
  #durablyServed(requestId: string): Served | null {
    const row = this.ledger.servedRecord(requestId);
    if (!row) return null;
    return { provider: row.provider as Provider, startedAtMs: row.startedAtMs, endedAtMs: row.endedAtMs ?? row.startedAtMs };
  }

  /** The hub's clock, from its WELCOME: statements' dispatch times are read on it (see `CrashGap`). */
  welcomed(serverTimeMs: number): void {
    this.ledger.setHubClockOffset(this.now() - serverTimeMs);
  }

  /**
   * The hub recorded (or refused) a receipt. `retry`: the hub will take it later (it is claimed again). `disputed`:
   * the hub kept it in its chain without confirming it (later receipts still settle), so it is marked and not
   * claimed again. Any other refusal (a receipt that does not verify or does not link) stops the chain at the hub:
   * the log says so, and the hub's flag and the owner's page show it.
   */
  acknowledged(ack: ReceiptAck): void {
    if (ack.refused) {
      if (ack.refused === "retry") {
        this.log.info("ledger.receipt_refused", { seq: ack.seq, refused: ack.refused });
        return;
      }
      if (ack.disputed === true && this.ledger.markRefused(ack.seq, fromBase64Url(ack.hash), ack.refused)) {
        this.log.error("ledger.receipt_disputed", {
          seq: ack.seq,
          refused: ack.refused,
          message: "The hub keeps this receipt as disputed (it does not confirm it) and settles later ones. Contact the hub operator",
        });
        return;
      }
      this.log.error("ledger.receipt_refused", {
        seq: ack.seq,
        refused: ack.refused,
        message:
          "The hub refused this receipt and keeps no later one until this is resolved. Run ./wellspring-agent ledger verify and contact the hub operator",
      });
      return;
    }
    if (!ack.countersignature || !this.ledger.acknowledge(ack.seq, fromBase64Url(ack.hash), fromBase64Url(ack.countersignature), this.now()))
      this.log.error("ledger.ack_mismatch", { seq: ack.seq, message: "the hub acknowledged a receipt this agent does not hold with that hash" });
  }

  /** What to re-send after a reconnect: receipts the hub never acknowledged, oldest first. */
  claims(): KeptReceipt[] {
    return this.ledger.unacknowledged(CLAIM_RECEIPTS_MAX);
  }

  /**
   * Compares the hub's tail with this chain. Equal at the hub's sequence = in sync (the agent may hold newer
   * receipts the hub has not acknowledged yet). The hub ahead of the agent, or a different hash at its sequence,
   * puts the agent out of sync. Returns the agent's own tail for its answer.
   */
  compareTail(hub: ChainTailMessage): ChainTailMessage {
    const own = this.ledger.tail;
    let differs: number | null = null;
    if (hub.seq > own.seq) differs = own.seq + 1;
    else if (hub.seq > 0) {
      const mine = this.ledger.range(hub.seq, 1)[0];
      if (!mine || !bytesEqual(mine.hash, fromBase64Url(hub.hash))) differs = this.#firstUnacknowledgedUpTo(hub.seq);
    }
    if (differs !== null && !this.#outOfSync) {
      this.#outOfSync = { firstDifferingSeq: differs };
      this.log.error("ledger.out_of_sync", {
        hubSeq: hub.seq,
        agentSeq: own.seq,
        firstDifferingSeq: differs,
        message: "The hub's receipt chain differs from this agent's: no new calls are taken. Run ./wellspring-agent ledger verify and contact the hub operator",
      });
    }
    return { seq: own.seq, hash: toBase64Url(own.hash) };
  }

  /** The first receipt up to `seq` the hub never countersigned: where the two chains may first differ. */
  #firstUnacknowledgedUpTo(seq: number): number {
    return Math.min(this.ledger.unacknowledged(1)[0]?.seq ?? seq, seq);
  }
}
