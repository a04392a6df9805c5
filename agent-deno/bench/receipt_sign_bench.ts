/**
 * Receipt signing in the agent: WebCrypto (`signReceipt`: `crypto.subtle.digest` + `crypto.subtle.sign`) against
 * node:crypto with the key made once (`signReceiptWith(nodeReceiptSigner(key))`, the calls the ledger writer makes), the same
 * receipt, alternated twice; prints µs of this process's CPU per receipt for each. Run from agent-deno/:
 *   ../node_modules/.bin/deno run -A bench/receipt_sign_bench.ts [receipts]
 */
import process from "node:process";
import { generateAgentKeyPair, RECEIPT_GENESIS_HASH, signReceipt, signReceiptWith } from "../../protocol/src/mod.ts";
import { nodeReceiptSigner } from "../src/receipt_signer.ts";
import { testReceiptInput } from "../src/testdata/receipt_input.ts";

const N = Number(Deno.args[0] ?? 5000);
const { pair } = await generateAgentKeyPair();
const signer = nodeReceiptSigner(pair.privateKey);
const receipt = { ...testReceiptInput("req_bench"), seq: 1, prevHash: RECEIPT_GENESIS_HASH, agentId: "agt_bench" };
const cpuMicros = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};
const out: Record<string, number[]> = { webcrypto: [], nodeCrypto: [] };
for (let round = 0; round < 2; round++) {
  let t = cpuMicros();
  for (let i = 0; i < N; i++) await signReceipt(pair.privateKey, receipt);
  out.webcrypto!.push(Math.round((cpuMicros() - t) / N));
  t = cpuMicros();
  for (let i = 0; i < N; i++) signReceiptWith(signer, receipt);
  out.nodeCrypto!.push(Math.round((cpuMicros() - t) / N));
}
console.log(JSON.stringify({ receipts: N, cpuMicrosPerReceipt: out }));
