import assert from "node:assert/strict";
import { generateAgentKeyPair, type SettlementStatement } from "../../protocol/src/mod.ts";
import { AgentLedger } from "./ledger.ts";
import { createLog } from "./log.ts";
import { earningByTable, ReceiptClerk } from "./receipts.ts";
import { testReceiptInput } from "./testdata/receipt_input.ts";

const AGENT = "agt_clerk_test";
const T0 = 1_764_000_000_000;

/** The hub's statement for the receipt `testReceiptInput` describes. */
function statement(requestId: string, dispatchedAtMs?: number): SettlementStatement {
  const r = testReceiptInput(requestId);
  return {
    ...r,
    reportedUsage: r.reportedUsage,
    chargeMicros: r.chargeMicros.toString(),
    earningMicros: r.earningMicros.toString(),
    dispatchedAtMs,
  };
}

Deno.test(
  "clerk: after a crash, a statement dispatched inside the crash gap is signed as `dispatched`; others the agent never recorded are refused",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "ws-clerk-" });
    const { pair } = await generateAgentKeyPair();
    let clock = T0;
    const now = () => clock;
    // A run that served one stream, recorded it durably, then died (never closed: kill -9).
    const dead = await AgentLedger.open(dir, AGENT, pair.privateKey, now);
    const deadClerk = new ReceiptClerk(dead, () => null, createLog("error"), now);
    clock = T0 + 1_000;
    deadClerk.started("req_recorded", "openai", clock);
    await dead.append(testReceiptInput("req_earlier")); // resolves once the batch holding the stream's start is durable
    clock = T0 + 600_000;
    // The next run starts ten minutes later: the gap is from the dead run's last batch to now.
    const ledger = await AgentLedger.open(dir, AGENT, pair.privateKey, now);
    const gaps = ledger.crashGaps();
    assert.equal(gaps.length, 1);
    assert.equal(gaps[0]!.fromMs, T0 + 1_000);
    assert.equal(gaps[0]!.toMs, T0 + 600_000);
    const clerk = new ReceiptClerk(ledger, () => null, createLog("error"), now);

    // Recorded before the crash: signed on the agent's own record.
    const recorded = await clerk.settle(statement("req_recorded", T0 + 900));
    assert.ok("signed" in recorded);
    assert.equal(recorded.signed.receipt.witness, undefined);
    assert.equal(recorded.signed.body[0], 1, "version 1: the agent's own record");
    // Not recorded, dispatched inside the gap: signed on the hub's word, marked as such, with the hub's time.
    const lost = await clerk.settle(statement("req_lost", T0 + 300_000));
    assert.ok("signed" in lost);
    assert.equal(lost.signed.receipt.witness, "dispatched");
    assert.equal(lost.signed.body[0], 2);
    assert.equal(lost.signed.receipt.startedAtMs, T0 + 300_000);
    // Not recorded and dispatched long before the gap, or with no dispatch time: refused.
    assert.deepEqual(await clerk.settle(statement("req_before", T0 - 3_600_000)), { refused: "unknown_request" });
    assert.deepEqual(await clerk.settle(statement("req_no_time")), { refused: "unknown_request" });
    // A clean stop leaves no gap.
    await ledger.close();
    clock = T0 + 700_000;
    const clean = await AgentLedger.open(dir, AGENT, pair.privateKey, now);
    assert.equal(clean.crashGaps().length, 1);
    await clean.close();
    await dead.close();
  },
);

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
