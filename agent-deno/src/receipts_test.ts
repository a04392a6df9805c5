import assert from "node:assert/strict";
import {
  CRASH_GAP_CLOCK_TOLERANCE_MS,
  CRASH_GAP_MAX_MS,
  CRASH_GAP_SETTLE_LAG_MS,
  decodeReceipt,
  generateAgentKeyPair,
  RECEIPT_VERSION_HUB_RECORD,
  toBase64Url,
  type SettlementStatement,
} from "../../protocol/src/mod.ts";
import { AgentLedger } from "./ledger.ts";
import { createLog } from "./log.ts";
import { earningByTable, ReceiptClerk } from "./receipts.ts";
import { testReceiptInput } from "./testdata/receipt_input.ts";

const AGENT = "agt_clerk_test";
const T0 = 1_764_000_000_000;

/** The hub's statement for the receipt `testReceiptInput` describes. */
function statement(requestId: string, dispatchedAtMs?: number): SettlementStatement {
  const { hubRecord: _, ...r } = testReceiptInput(requestId);
  return {
    ...r,
    reportedUsage: r.reportedUsage,
    chargeMicros: r.chargeMicros.toString(),
    earningMicros: r.earningMicros.toString(),
    dispatchedAtMs,
  };
}

const CRASH_WRITER = new URL("./testdata/crash_gap_writer.ts", import.meta.url).pathname;

/** Runs the crash helper (testdata/crash_gap_writer.ts) and kills it with SIGKILL once its flush is armed. */
async function runAndKill(dir: string, privatePkcs8: Uint8Array, batchMs: number, offsetMs: number, armMs: number): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", CRASH_WRITER, dir, toBase64Url(privatePkcs8), AGENT, String(batchMs), String(offsetMs), String(armMs)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("armed\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  child.kill("SIGKILL");
  await child.status;
  await reader.cancel().catch(() => {});
  assert.ok(out.includes("armed"), "the helper died before arming its flush");
}

Deno.test(
  "clerk: after kill -9, a statement dispatched inside the bounded crash gap is signed as `dispatched`; an oversized or forged gap is refused",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ws-clerk-" });
    const { pair, privatePkcs8 } = await generateAgentKeyPair();
    // The dead run: a batch at T0 + 1 s, the agent's clock 2 s ahead of the hub's, a stream's record queued at
    // T0 + 300 s and never flushed (kill -9). The next run starts ten minutes after T0.
    const batchMs = T0 + 1_000;
    const offsetMs = 2_000;
    const armMs = T0 + 300_000;
    await runAndKill(dir, privatePkcs8, batchMs, offsetMs, armMs);
    let clock = T0 + 600_000;
    const now = () => clock;
    const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey, now);
    // Bounded: CRASH_GAP_MAX_MS either side of the armed flush (not from the last batch to the restart), on the
    // hub's clock.
    assert.deepEqual(ledger.crashGaps(), [{ fromMs: armMs - CRASH_GAP_MAX_MS - offsetMs, toMs: armMs + CRASH_GAP_MAX_MS - offsetMs }]);
    const clerk = new ReceiptClerk(ledger, () => null, createLog("error"), now);

    // Recorded before the crash: signed on the agent's own record.
    const recorded = await clerk.settle(statement("req_recorded", batchMs - offsetMs));
    assert.ok("signed" in recorded);
    assert.equal(recorded.signed.receipt.witness, undefined);
    assert.equal(recorded.signed.body[0], 1, "version 1: the agent's own record");
    // Not recorded, dispatched (hub clock) when the lost record was queued: signed on the hub's word, marked as such.
    const lost = await clerk.settle(statement("req_lost", armMs - offsetMs));
    assert.ok("signed" in lost);
    assert.equal(lost.signed.receipt.witness, "dispatched");
    assert.equal(lost.signed.body[0], 2);
    assert.equal(lost.signed.receipt.startedAtMs, armMs - offsetMs);
    // At the gap's far edge (with the clock tolerance and a leased request's settlement lag): signed; one
    // millisecond beyond: refused.
    const edge = armMs + CRASH_GAP_MAX_MS - offsetMs + CRASH_GAP_CLOCK_TOLERANCE_MS + CRASH_GAP_SETTLE_LAG_MS;
    assert.ok("signed" in (await clerk.settle(statement("req_edge", edge))));
    assert.deepEqual(await clerk.settle(statement("req_beyond", edge + 1)), { refused: "unknown_request" });
    const nearEdge = armMs - CRASH_GAP_MAX_MS - offsetMs - CRASH_GAP_CLOCK_TOLERANCE_MS;
    assert.ok("signed" in (await clerk.settle(statement("req_near_edge", nearEdge))));
    assert.deepEqual(await clerk.settle(statement("req_before", nearEdge - 1)), { refused: "unknown_request" });
    // Inside the old, unbounded gap (after the last batch, long before the crash): refused.
    assert.deepEqual(await clerk.settle(statement("req_idle", batchMs + 60_000 - offsetMs)), { refused: "unknown_request" });
    // No dispatch time: refused.
    assert.deepEqual(await clerk.settle(statement("req_no_time")), { refused: "unknown_request" });
    // A clean stop leaves no gap.
    await ledger.close();
    clock = T0 + 700_000;
    const clean = await AgentLedger.open(dir, AGENT, pair.privateKey, now);
    assert.equal(clean.crashGaps().length, 1);
    await clean.close();
  },
);

Deno.test("clerk: a crash gap starts no earlier than the last batch; a run that died without arming a flush leaves none", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ws-clerk-" });
  const { pair, privatePkcs8 } = await generateAgentKeyPair();
  // The flush was armed at the moment of the last committed batch.
  const armMs = T0 + 1_000;
  await runAndKill(dir, privatePkcs8, armMs, 0, armMs);
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey, () => T0 + 600_000);
  // A record queued at armMs (the last batch) may be lost: the gap is [armMs, armMs + CRASH_GAP_MAX_MS], never earlier.
  assert.deepEqual(ledger.crashGaps(), [{ fromMs: armMs, toMs: armMs + CRASH_GAP_MAX_MS }]);
  await ledger.close();
  // A run that armed nothing and died (never closed) leaves no gap: the mark was cleared at its start.
  const quiet = await AgentLedger.open(dir, AGENT, pair.privateKey, () => T0 + 700_000);
  const after = await AgentLedger.open(dir, AGENT, pair.privateKey, () => T0 + 800_000);
  assert.equal(after.crashGaps().length, 1);
  await after.close();
  await quiet.close();
});

Deno.test("clerk: the hub's sealed record in a statement is signed into the receipt as it came (version 3)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ws-clerk-" });
  const { pair } = await generateAgentKeyPair();
  const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey, () => T0);
  const clerk = new ReceiptClerk(
    ledger,
    () => null,
    createLog("error"),
    () => T0,
  );
  clerk.served({ requestId: "req_sealed", provider: "openai", startedAtMs: T0 - 10, endedAtMs: T0 });
  const hubRecord = Uint8Array.of(1, 2, 3, 4, 5);
  const out = await clerk.settle({ ...statement("req_sealed"), hubRecord: toBase64Url(hubRecord) });
  assert.ok("signed" in out);
  assert.equal(out.signed.body[0], RECEIPT_VERSION_HUB_RECORD);
  assert.deepEqual(decodeReceipt(out.signed.body).hubRecord, hubRecord);
  // Kept in the ledger and exported with the receipt.
  assert.deepEqual(decodeReceipt(ledger.range(1, 1)[0]!.body).hubRecord, hubRecord);
  await ledger.close();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("clerk: the owner's earning by the agent's table uses the hub's formula (rounded up official cost, earning rounded down)", () => {
  const table = {
    ver: 3,
    publishedAt: "2026-12-01T00:00:00Z",
    prices: [
      {
        provider: "openai" as const,
        model: "gpt-4o-mini",
        inputMicrosPerMTok: "150000",
        outputMicrosPerMTok: "600000",
        cachedInputMicrosPerMTok: "75000",
        audioSecondMicros: undefined,
        imageMicros: undefined,
        characterMicrosPerM: undefined,
      },
    ],
  };
  const s = {
    ...statement("req_price"),
    priceVer: 3,
    chargedUsage: { inputTokens: 1_001, outputTokens: 500, cachedInputTokens: 1, audioSeconds: 0, images: 0, characters: 0 },
  };
  // ⌈(1,000 × 150,000 + 1 × 75,000 + 500 × 600,000) / 10⁶⌉ = ⌈450.075⌉ = 451; × 0.7 = 315.7 → 315.
  assert.equal(earningByTable(table, "openai", s), 315n);
  assert.equal(earningByTable(table, null, s), 315n, "the model names one price: found without the provider");
  assert.equal(earningByTable(table, "anthropic", s), -1n);
  assert.equal(earningByTable({ ...table, ver: 2 }, "openai", s), -1n);
});
