import assert from "node:assert/strict";
import {
  generateAgentKeyPair,
  importReceiptVerifyKey,
  RECEIPT_GENESIS_HASH,
  signReceipt,
  signReceiptWith,
  verifyReceiptSignature,
} from "../../protocol/src/mod.ts";
import { nodeReceiptSigner } from "./receipt_signer.ts";
import { testReceiptInput } from "./testdata/receipt_input.ts";

Deno.test("receipt signer: node:crypto gives the same body, hash and signature bytes as WebCrypto, and they verify", async () => {
  const { pair } = await generateAgentKeyPair();
  const signer = nodeReceiptSigner(pair.privateKey);
  const key = (await importReceiptVerifyKey(pair.publicKey))!;
  let prevHash = RECEIPT_GENESIS_HASH;
  for (let seq = 1; seq <= 50; seq++) {
    const receipt = {
      ...testReceiptInput(`req_${seq}`, BigInt(seq * 37)),
      model: seq % 2 ? "gpt-4o-mini" : "claude-sonnet-4-5 ✓",
      seq,
      prevHash,
      agentId: "agt_signer_test",
      ...(seq % 5 === 0 ? { hubRecord: new Uint8Array(seq).fill(seq) } : {}),
    };
    const web = await signReceipt(pair.privateKey, receipt);
    const node = signReceiptWith(signer, receipt);
    assert.deepEqual(node.body, web.body);
    assert.deepEqual(node.hash, web.hash);
    assert.deepEqual(node.signature, web.signature);
    assert.ok(await verifyReceiptSignature(key, node.hash, node.signature));
    prevHash = node.hash;
  }
});

Deno.test("receipt signer: another key's signature differs and does not verify", async () => {
  const a = await generateAgentKeyPair();
  const b = await generateAgentKeyPair();
  const receipt = { ...testReceiptInput("req_x"), seq: 1, prevHash: RECEIPT_GENESIS_HASH, agentId: "agt_signer_test" };
  const signedByB = signReceiptWith(nodeReceiptSigner(b.pair.privateKey), receipt);
  assert.notDeepEqual(signedByB.signature, signReceiptWith(nodeReceiptSigner(a.pair.privateKey), receipt).signature);
  assert.equal(await verifyReceiptSignature((await importReceiptVerifyKey(a.pair.publicKey))!, signedByB.hash, signedByB.signature), false);
});
