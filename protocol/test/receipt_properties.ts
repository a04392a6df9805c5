/**
 * Property tests of usage receipts, shared by Node (vitest) and Deno (`deno test`): canonical encoding round
 * trips, and every random edit, deletion, reorder, duplication and truncation of a signed chain — in the form
 * the hub and the agent's database keep (body + stored hash + signature) and in the form of the agent's log
 * and export files (hash recomputed) — is detected, naming the first bad sequence number.
 */
import type fcModule from "fast-check";
import {
  bytesEqual,
  countersignReceipt,
  decodeLogRecords,
  decodeReceipt,
  encodeLogRecord,
  encodeReceipt,
  generateAgentKeyPair,
  importReceiptVerifyKey,
  logEntries,
  RECEIPT_BODY_BYTES_MAX,
  RECEIPT_END_CAUSES,
  RECEIPT_GENESIS_HASH,
  RECEIPT_HUB_RECORD_BYTES_MAX,
  RECEIPT_INT_MAX,
  ReceiptFormatError,
  receiptHash,
  signReceipt,
  verifyChain,
  verifyCountersignature,
  type ChainEntry,
  type Receipt,
  type ReceiptUsage,
} from "../src/mod.ts";
import type { PropertyCase } from "./properties.ts";

type Fc = typeof fcModule;

function check(cond: boolean, message: string): void {
  if (!cond) throw new Error(message);
}

/** `f` threw a ReceiptFormatError (what encoding and decoding throw for anything not canonical). */
function refusedAsFormat(f: () => unknown): boolean {
  try {
    f();
  } catch (error) {
    return error instanceof ReceiptFormatError;
  }
  return false;
}

function usageArb(fc: Fc) {
  const n = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
  return fc.record({ inputTokens: n, outputTokens: n, cachedInputTokens: n, audioSeconds: n, images: n, characters: n });
}

function receiptArb(fc: Fc) {
  const text = fc.string({ minLength: 1, maxLength: 64 });
  const micros = fc.bigInt({ min: 0n, max: RECEIPT_INT_MAX });
  return fc
    .record({
      seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      prevHash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
      agentId: text,
      requestId: text,
      model: text,
      reportedUsage: fc.option(usageArb(fc), { nil: null }),
      chargedUsage: usageArb(fc),
      estimated: fc.boolean(),
      priceVer: fc.integer({ min: 0, max: 0xffffffff }),
      tierBps: fc.integer({ min: 0, max: 10_000 }),
      chargeMicros: micros,
      earningMicros: micros,
      agentEarningMicros: fc.bigInt({ min: -1n, max: RECEIPT_INT_MAX }),
      startedAtMs: fc.integer({ min: 0, max: 2 ** 45 }),
      durationMs: fc.integer({ min: 0, max: 2 ** 30 }),
      endCause: fc.constantFrom(...RECEIPT_END_CAUSES),
      dispatched: fc.boolean(),
      hubRecord: fc.option(fc.uint8Array({ minLength: 1, maxLength: RECEIPT_HUB_RECORD_BYTES_MAX }), { nil: undefined }),
    })
    .map(({ durationMs, dispatched, hubRecord, ...r }): Receipt => ({
      ...r,
      endedAtMs: r.startedAtMs + durationMs,
      ...(dispatched ? { witness: "dispatched" as const } : {}),
      ...(hubRecord ? { hubRecord } : {}),
    }));
}

const USAGE: ReceiptUsage = { inputTokens: 12, outputTokens: 40, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };
const CHAIN_LENGTH = 24;
/** A receipt with every field at its smallest. */
const MINIMAL_RECEIPT: Receipt = {
  seq: 1,
  prevHash: RECEIPT_GENESIS_HASH,
  agentId: "a",
  requestId: "r",
  model: "m",
  reportedUsage: null,
  chargedUsage: USAGE,
  estimated: false,
  priceVer: 0,
  tierBps: 0,
  chargeMicros: 0n,
  earningMicros: 0n,
  agentEarningMicros: -1n,
  startedAtMs: 5,
  endedAtMs: 5,
  endCause: "completed",
};
const AGENT_ID = "agt_receipt_test";

/** A signed chain of CHAIN_LENGTH receipts, seq 1… with every link. */
async function makeChain(privateKey: CryptoKey): Promise<ChainEntry[]> {
  const out: ChainEntry[] = [];
  let prev = RECEIPT_GENESIS_HASH;
  for (let seq = 1; seq <= CHAIN_LENGTH; seq++) {
    const s = await signReceipt(privateKey, {
      seq,
      prevHash: prev,
      agentId: AGENT_ID,
      requestId: `req_${seq}`,
      model: "gpt-4o-mini",
      reportedUsage: USAGE,
      chargedUsage: USAGE,
      estimated: false,
      priceVer: 1,
      tierBps: 7000,
      chargeMicros: BigInt(100 + seq),
      earningMicros: BigInt(70 + seq),
      agentEarningMicros: BigInt(70 + seq),
      startedAtMs: 1_764_000_000_000 + seq * 10,
      endedAtMs: 1_764_000_000_005 + seq * 10,
      endCause: "completed",
    });
    out.push({ body: s.body, hash: s.hash, signature: s.signature });
    prev = s.hash;
  }
  return out;
}

type Mutation =
  | { t: "body"; k: number; at: number; xor: number }
  | { t: "signature"; k: number; at: number; xor: number }
  | { t: "hash"; k: number; at: number; xor: number }
  | { t: "delete"; k: number }
  | { t: "swap"; k: number; d: number }
  | { t: "duplicate"; k: number }
  | { t: "truncate"; k: number };

function mutationArb(fc: Fc) {
  const k = fc.integer({ min: 0, max: CHAIN_LENGTH - 1 });
  const xor = fc.integer({ min: 1, max: 255 });
  const at = fc.nat();
  return fc.oneof(
    fc.record({ t: fc.constant("body" as const), k, at, xor }),
    fc.record({ t: fc.constant("signature" as const), k, at, xor }),
    fc.record({ t: fc.constant("hash" as const), k, at, xor }),
    fc.record({ t: fc.constant("delete" as const), k }),
    fc.record({ t: fc.constant("swap" as const), k, d: fc.integer({ min: 1, max: CHAIN_LENGTH - 1 }) }),
    fc.record({ t: fc.constant("duplicate" as const), k }),
    fc.record({ t: fc.constant("truncate" as const), k }),
  );
}

function flip(bytes: Uint8Array, at: number, xor: number): Uint8Array {
  const out = bytes.slice();
  out[at % out.length]! ^= xor;
  return out;
}

/** Applies a mutation; returns the mutated chain and the sequence number a verifier must name. */
function mutate(chain: ChainEntry[], m: Mutation): { entries: ChainEntry[]; firstBadSeq: number } {
  const entries = chain.slice();
  switch (m.t) {
    case "body":
      entries[m.k] = { ...entries[m.k]!, body: flip(entries[m.k]!.body, m.at, m.xor) };
      return { entries, firstBadSeq: m.k + 1 };
    case "signature":
      entries[m.k] = { ...entries[m.k]!, signature: flip(entries[m.k]!.signature, m.at, m.xor) };
      return { entries, firstBadSeq: m.k + 1 };
    case "hash":
      entries[m.k] = { ...entries[m.k]!, hash: flip(entries[m.k]!.hash, m.at, m.xor) };
      return { entries, firstBadSeq: m.k + 1 };
    case "delete":
      entries.splice(m.k, 1);
      return { entries, firstBadSeq: m.k + 1 };
    case "swap": {
      const j = (m.k + m.d) % CHAIN_LENGTH;
      [entries[m.k], entries[j]] = [entries[j]!, entries[m.k]!];
      return { entries, firstBadSeq: Math.min(m.k, j) + 1 };
    }
    case "duplicate":
      entries.splice(m.k + 1, 0, entries[m.k]!);
      return { entries, firstBadSeq: m.k + 2 };
    case "truncate":
      return { entries: entries.slice(0, m.k), firstBadSeq: m.k + 1 };
  }
}

export const receiptProperties: PropertyCase[] = [
  {
    name: "receipts: canonical encoding round-trips, is deterministic and refuses trailing or missing bytes",
    run(fc) {
      fc.assert(
        fc.property(receiptArb(fc), fc.uint8Array({ minLength: 1, maxLength: 8 }), (r, extra) => {
          const body = encodeReceipt(r);
          check(body.length <= RECEIPT_BODY_BYTES_MAX, "body too large");
          const back = decodeReceipt(body);
          check(bytesEqual(encodeReceipt(back), body), "re-encoding differs");
          check(back.chargeMicros === r.chargeMicros && back.requestId === r.requestId && back.seq === r.seq, "fields differ");
          // Version 1 for the agent's own record, version 2 (one more byte) only for another witness, version 3 with
          // the hub's record.
          check(body[0] === (r.hubRecord ? 3 : r.witness ? 2 : 1) && back.witness === r.witness, "witness or version differs");
          check(r.hubRecord ? back.hubRecord !== undefined && bytesEqual(back.hubRecord, r.hubRecord) : back.hubRecord === undefined, "hub record differs");
          for (const bad of [new Uint8Array([...body, ...extra]), body.subarray(0, body.length - 1)]) {
            check(
              refusedAsFormat(() => decodeReceipt(bad)),
              "a non-canonical body was accepted",
            );
          }
        }),
        { numRuns: 2000 },
      );
    },
  },
  {
    name: "receipts: a version 2 body must name a witness other than `served` (one encoding per receipt)",
    run() {
      const r = MINIMAL_RECEIPT;
      const v1 = encodeReceipt(r);
      const v2 = encodeReceipt({ ...r, witness: "dispatched" });
      check(v2.length === v1.length + 1 && v2[v2.length - 1] === 1, "version 2 is version 1 plus the witness byte");
      for (const bad of [new Uint8Array([2, ...v1.subarray(1), 0]), new Uint8Array([2, ...v1.subarray(1), 9]), new Uint8Array([2, ...v1.subarray(1)])]) {
        check(
          refusedAsFormat(() => decodeReceipt(bad)),
          "a non-canonical version 2 body was accepted",
        );
      }
    },
  },
  {
    name: "receipts: a version 3 body is version 1, the witness byte, then the hub record (1…1024 bytes, length-prefixed)",
    run() {
      const r = MINIMAL_RECEIPT;
      const v1 = encodeReceipt(r);
      const hubRecord = Uint8Array.of(7, 8, 9);
      const v3 = encodeReceipt({ ...r, hubRecord });
      check(v3[0] === 3 && v3.length === v1.length + 1 + 2 + 3, "version 3 is version 1 plus the witness byte and the hub record");
      check(v3[v1.length] === 0 && bytesEqual(v3.subarray(v1.length + 3), hubRecord), "served witness byte, then the record");
      const back = decodeReceipt(encodeReceipt({ ...r, witness: "dispatched", hubRecord }));
      check(back.witness === "dispatched" && bytesEqual(back.hubRecord!, hubRecord), "a dispatched receipt keeps its hub record");
      const head = new Uint8Array([3, ...v1.subarray(1)]);
      for (const bad of [
        new Uint8Array([...head, 9, 0, 3, 7, 8, 9]), // unknown witness
        new Uint8Array([...head, 0, 0, 0]), // empty record
        new Uint8Array([...head, 0, 0, 4, 7, 8, 9]), // shorter than its length
        new Uint8Array([...head, 0]), // no record
      ]) {
        check(
          refusedAsFormat(() => decodeReceipt(bad)),
          "a non-canonical version 3 body was accepted",
        );
      }
      check(
        refusedAsFormat(() => encodeReceipt({ ...r, hubRecord: new Uint8Array(RECEIPT_HUB_RECORD_BYTES_MAX + 1) })),
        "a hub record over the limit was encoded",
      );
    },
  },
  {
    name: "receipts: decoding arbitrary bytes never throws anything but ReceiptFormatError",
    run(fc) {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
          try {
            decodeReceipt(bytes);
          } catch (error) {
            check(error instanceof ReceiptFormatError, `threw ${String(error)}`);
          }
        }),
        { numRuns: 3000 },
      );
    },
  },
  {
    name: "receipts: the encoder refuses values outside their ranges",
    run() {
      const base = decodeReceipt(encodeReceipt(MINIMAL_RECEIPT));
      const bad: Partial<Receipt>[] = [
        { seq: 0 },
        { chargeMicros: -1n },
        { earningMicros: RECEIPT_INT_MAX + 1n },
        { agentEarningMicros: -2n },
        { tierBps: 10_001 },
        { endedAtMs: 4 },
        { requestId: "" },
        { model: "x".repeat(257) },
        { prevHash: new Uint8Array(31) },
        { chargedUsage: { ...USAGE, outputTokens: 1.5 } },
      ];
      for (const b of bad) {
        let refused = false;
        try {
          encodeReceipt({ ...base, ...b });
        } catch (error) {
          refused = error instanceof ReceiptFormatError;
        }
        check(refused, `accepted ${JSON.stringify(Object.keys(b))}`);
      }
    },
  },
  {
    name: "receipts: 1,000 random edits, deletions, reorders, duplications and truncations are detected at the first bad sequence (stored and log forms)",
    async run(fc) {
      const { pair } = await generateAgentKeyPair();
      const key = (await importReceiptVerifyKey(pair.publicKey))!;
      const chain = await makeChain(pair.privateKey);
      const expectedTail = { seq: CHAIN_LENGTH, hash: chain[CHAIN_LENGTH - 1]!.hash };
      const intact = await verifyChain(chain, { agentId: AGENT_ID, key, expectedTail });
      check(intact.ok && intact.count === CHAIN_LENGTH, "the intact chain does not verify");
      await fc.assert(
        fc.asyncProperty(mutationArb(fc), fc.boolean(), async (m, logForm) => {
          const { entries, firstBadSeq } = mutate(chain, m);
          // The log form keeps no hash: its reader recomputes it, so a hash edit is not a change there.
          if (logForm && m.t === "hash") return;
          const kept = logForm
            ? await logEntries(decodeLogRecords(new Uint8Array(entries.flatMap((e) => [...encodeLogRecord(e.body, e.signature)]))).records)
            : entries;
          const verdict = await verifyChain(kept, { agentId: AGENT_ID, key, expectedTail });
          check(!verdict.ok, `${m.t} was not detected`);
          if (!verdict.ok) check(verdict.firstBadSeq === firstBadSeq, `${m.t}: named ${verdict.firstBadSeq} (${verdict.fault}), expected ${firstBadSeq}`);
        }),
        { numRuns: 1000 },
      );
    },
  },
  {
    name: "receipts: a chain signed by another key, or naming another agent, is refused at its first entry; the hub's countersignature verifies only for its hash",
    async run() {
      const agent = await generateAgentKeyPair();
      const other = await generateAgentKeyPair();
      const chain = await makeChain(other.pair.privateKey);
      const key = (await importReceiptVerifyKey(agent.pair.publicKey))!;
      const wrongKey = await verifyChain(chain, { agentId: AGENT_ID, key });
      check(!wrongKey.ok && wrongKey.fault === "bad_signature" && wrongKey.firstBadSeq === 1, "another key's chain verified");
      const otherKey = (await importReceiptVerifyKey(other.pair.publicKey))!;
      const wrongAgent = await verifyChain(chain, { agentId: "agt_someone_else", key: otherKey });
      check(!wrongAgent.ok && wrongAgent.fault === "wrong_agent", "another agent's chain verified");
      const hub = await generateAgentKeyPair();
      const hubKey = (await importReceiptVerifyKey(hub.pair.publicKey))!;
      const hash = await receiptHash(chain[0]!.body);
      const counter = await countersignReceipt(hub.pair.privateKey, hash);
      check(await verifyCountersignature(hubKey, hash, counter), "countersignature does not verify");
      check(!(await verifyCountersignature(hubKey, chain[1]!.hash, counter)), "countersignature verified another hash");
      check(!(await verifyCountersignature(otherKey, hash, counter)), "countersignature verified with another key");
    },
  },
  {
    name: "receipts: a torn log tail (a write cut before its fsync) leaves every whole record readable",
    async run(fc) {
      const { pair } = await generateAgentKeyPair();
      const chain = await makeChain(pair.privateKey);
      const file = new Uint8Array(chain.flatMap((e) => [...encodeLogRecord(e.body, e.signature)]));
      fc.assert(
        fc.property(fc.integer({ min: 0, max: file.length }), (cut) => {
          const { records, wholeBytes } = decodeLogRecords(file.subarray(0, cut));
          check(wholeBytes <= cut, "whole part past the cut");
          for (let i = 0; i < records.length; i++) check(bytesEqual(records[i]!.body, chain[i]!.body), "record differs");
        }),
        { numRuns: 500 },
      );
    },
  },
];
