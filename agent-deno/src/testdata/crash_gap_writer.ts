// Test helper for receipts_test.ts: a run of the agent's ledger that dies with a stream's record still queued.
// On its injected clock it commits one receipt and one stream's start at BATCH_MS, learns the hub's clock (agent − hub = OFFSET_MS), then at
// ARM_MS records a stream's start (queued for the next flush, which arms the pending mark) and prints "armed". It
// then blocks its own event loop, so the flush never runs, until the test kills it with SIGKILL.
// Usage: deno run -A crash_gap_writer.ts DIR PKCS8_BASE64URL AGENT_ID BATCH_MS OFFSET_MS ARM_MS
import { fromBase64Url, importAgentPrivateKey } from "../../../protocol/src/mod.ts";
import { AgentLedger, LEDGER_SERVED_FLUSH_MS } from "../ledger.ts";
import { createLog } from "../log.ts";
import { ReceiptClerk } from "../receipts.ts";
import { testReceiptInput } from "./receipt_input.ts";

const [dir, pkcs8, agentId, batchMs, offsetMs, armMs] = Deno.args;
let clock = Number(batchMs);
const now = () => clock;
const ledger = await AgentLedger.open(dir!, agentId!, await importAgentPrivateKey(fromBase64Url(pkcs8!)), now);
const clerk = new ReceiptClerk(ledger, () => null, createLog("error"), now);
clerk.started("req_recorded", "openai", clock);
await ledger.append(testReceiptInput("req_committed")); // the batch that also commits req_recorded's start
// Let that flush's timer run out, so the next record arms a new one.
await new Promise((r) => setTimeout(r, LEDGER_SERVED_FLUSH_MS * 4));
clerk.welcomed(clock - Number(offsetMs));
clock = Number(armMs);
clerk.started("req_in_flight", "openai", clock);
Deno.stdout.writeSync(new TextEncoder().encode("armed\n"));
// The process "dies" here: nothing more runs (no flush, no close) until SIGKILL.
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
