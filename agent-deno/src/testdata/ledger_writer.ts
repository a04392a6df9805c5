// Test helper for ledger_test.ts: appends receipts as fast as it can and prints each committed sequence number,
// until the test kills it with SIGKILL. Usage: deno run -A ledger_writer.ts DIR PKCS8_BASE64URL START_INDEX AGENT_ID
import { fromBase64Url, importAgentPrivateKey } from "../../../protocol/src/mod.ts";
import { AgentLedger } from "../ledger.ts";
import { testReceiptInput } from "./receipt_input.ts";

const [dir, pkcs8, start, agentId] = Deno.args;
const ledger = await AgentLedger.open(dir!, agentId!, await importAgentPrivateKey(fromBase64Url(pkcs8!)));
const out = Deno.stdout;
const enc = new TextEncoder();
let i = Number(start);
for (;;) {
  const batch = Array.from({ length: 16 }, () => ledger.append(testReceiptInput(`req_${i++}`)));
  for (const s of await Promise.all(batch)) await out.write(enc.encode(`${s.receipt.seq} ${s.receipt.requestId}\n`));
}
