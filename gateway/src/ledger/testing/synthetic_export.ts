/**
 * A synthetic agent ledger export for the rebuild's tests and benchmark: an enrolled agent (its owner and key in the
 * database), `users` users with a key and a funded wallet each, and `receipts` signed receipts in the export format,
 * each carrying the hub's sealed record (settlement row + request record) of a request that moved money.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { newId, type Db } from "@wellspring/db";
import { concatBytes, encodeLogRecord, generateAgentKeyPair, RECEIPT_GENESIS_HASH, signReceipt, type Receipt } from "@wellspring/protocol";
import { recordRowJson } from "../../api/records.ts";
import { Ledger } from "../../billing/ledger.ts";
import { issueKey } from "../../ops/keys.ts";
import { hubRecordJson, sealHubRecord } from "../hub_record.ts";

export interface SyntheticExport {
  agentId: string;
  rebuildKey: Uint8Array;
  /** The export file's bytes (`./wellspring-agent ledger export`). */
  bytes: Uint8Array;
  receipts: Receipt[];
}

export interface SyntheticOptions {
  receipts: number;
  users?: number;
  /** The hub's rebuild key (a fresh one when absent). */
  rebuildKey?: Uint8Array;
  /** Changes what the hub sealed for receipt `seq` (1-based) after the agent's figures were set: a hub record that lies. */
  sealedCharge?: (seq: number, charge: number) => number;
  /** Receipts (1-based) signed without a hub record (as before version 3). */
  withoutRecord?: (seq: number) => boolean;
}

const MODEL = "gpt-4o-mini";
const PRICE_VER = 1;
const TIER_BPS = 7000;

export async function syntheticExport(db: Db, pool: pg.Pool, opts: SyntheticOptions): Promise<SyntheticExport> {
  const ownerId = newId("usr");
  await db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  const { pair } = await generateAgentKeyPair();
  const agentId = newId("agt");
  await db.agent.create({ data: { id: agentId, ownerId, name: "synthetic", publicKey: pair.publicKey } });
  const users: { id: string; keyId: string }[] = [];
  for (let i = 0; i < (opts.users ?? 10); i++) {
    const id = newId("usr");
    await db.user.create({ data: { id, email: `${id}@user.test` } });
    users.push({ id, keyId: (await issueKey(db, id, "synthetic")).id });
    await new Ledger(pool).credit(id, 10n ** 12n, "grant", `grant:${id}`);
  }
  const rebuildKey = opts.rebuildKey ?? new Uint8Array(randomBytes(32));
  const usage = { inputTokens: 1200, outputTokens: 300, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };
  // What every receipt signs beside its request, money and times.
  const signedFigures = { model: MODEL, reportedUsage: usage, chargedUsage: usage, estimated: false, priceVer: PRICE_VER, tierBps: TIER_BPS };
  const t0 = Date.now() - opts.receipts * 1000;
  const parts: Uint8Array[] = [];
  const receipts: Receipt[] = [];
  let prev = { seq: 0, hash: RECEIPT_GENESIS_HASH };
  for (let i = 0; i < opts.receipts; i++) {
    const seq = i + 1;
    const user = users[i % users.length]!;
    const requestId = newId("req");
    const at = new Date(t0 + i * 1000).toISOString();
    const charge = 1_000 + (i % 97);
    const earning = Math.floor((charge * 7) / 10);
    const sealedCharge = opts.sealedCharge?.(seq, charge) ?? charge;
    const reservation = JSON.stringify({
      request_id: requestId,
      user_id: user.id,
      amount_micros: 5_000,
      status: "settled",
      charge_micros: sealedCharge,
      price_ver: PRICE_VER,
      plan_id: null,
      api: "openai",
      model: MODEL,
      agent_id: agentId,
      owner_id: ownerId,
      tier: "A",
      tier_bps: TIER_BPS,
      earning_micros: earning,
      input_tokens: usage.inputTokens,
      output_tokens: usage.outputTokens,
      cached_input_tokens: 0,
      estimated: false,
      end_cause: "completed",
      created_at: at,
      settled_at: at,
      lease_id: null,
      audio_seconds: null,
      images: null,
      characters: null,
      official_micros: charge,
      plan_bps: 10000,
      lease_micros: null,
      overdraft_micros: 0,
    });
    const record = recordRowJson({
      id: requestId,
      userId: user.id,
      keyId: user.keyId,
      agentId,
      gatewayId: "gw_synthetic",
      route: "/v1/chat/completions",
      provider: "openai",
      model: MODEL,
      streamed: i % 2 === 0,
      httpStatus: 200,
      endCause: "completed",
      bytesIn: 2_000,
      bytesOut: 1_500,
      startedAt: new Date(at),
      firstByteMs: 40,
      durationMs: 400,
      inputTokens: usage.inputTokens,
      outputTokens: usage.outputTokens,
      cachedInputTokens: 0,
      usageEstimated: false,
      priceVer: PRICE_VER,
      tier: "A",
      tierBps: TIER_BPS,
      userChargeMicros: BigInt(sealedCharge),
      ownerEarningMicros: BigInt(earning),
    });
    const receipt: Receipt = {
      seq,
      prevHash: prev.hash,
      agentId,
      requestId,
      ...signedFigures,
      chargeMicros: BigInt(charge),
      earningMicros: BigInt(earning),
      agentEarningMicros: BigInt(earning),
      startedAtMs: Date.parse(at),
      endedAtMs: Date.parse(at) + 400,
      endCause: "completed",
      ...(opts.withoutRecord?.(seq) ? {} : { hubRecord: sealHubRecord(rebuildKey, requestId, hubRecordJson(reservation, record)) }),
    };
    const signed = await signReceipt(pair.privateKey, receipt);
    parts.push(encodeLogRecord(signed.body, signed.signature));
    receipts.push(receipt);
    prev = { seq, hash: signed.hash };
  }
  return { agentId, rebuildKey, bytes: concatBytes(parts), receipts };
}
