import { describe, expect, it } from "vitest";
import {
  countersignReceipt,
  encodeReceipt,
  generateAgentKeyPair,
  importReceiptVerifyKey,
  receiptHash,
  signReceipt,
  toBase64Url,
  verifyCountersignature,
  verifyReceiptSignature,
  type Receipt,
} from "@wellspring/protocol";
import { countersignReceiptAsync, receiptHashSync, receiptVerifyKeyObject, verifyReceiptSignatureAsync } from "./receipt_crypto.ts";
import { KeyObject } from "node:crypto";

const usage = { inputTokens: 12, outputTokens: 40, cachedInputTokens: 0, audioSeconds: 0, images: 0, characters: 0 };
const receipt: Receipt = {
  seq: 1,
  prevHash: new Uint8Array(32),
  agentId: "agt_1",
  requestId: "req_1",
  model: "gpt-4o-mini",
  reportedUsage: usage,
  chargedUsage: usage,
  estimated: false,
  priceVer: 3,
  tierBps: 8000,
  chargeMicros: 1234n,
  earningMicros: 987n,
  agentEarningMicros: 987n,
  startedAtMs: 1_764_000_000_000,
  endedAtMs: 1_764_000_000_100,
  endCause: "completed",
};

describe("the hub's receipt crypto through node:crypto", () => {
  it("hashes, verifies and countersigns the same bytes as protocol/src/receipt.ts (WebCrypto)", async () => {
    const agent = (await generateAgentKeyPair()).pair;
    const hub = (await generateAgentKeyPair()).pair;
    const signed = await signReceipt(agent.privateKey, receipt);
    const body = encodeReceipt(receipt);
    expect(receiptHashSync(body)).toEqual(await receiptHash(body));
    const key = receiptVerifyKeyObject(agent.publicKey)!;
    expect(await verifyReceiptSignatureAsync(key, signed.hash, signed.signature)).toBe(true);
    const countersignature = await countersignReceiptAsync(KeyObject.from(hub.privateKey), signed.hash);
    // Ed25519 is deterministic: the same signature WebCrypto makes, and it verifies as one.
    expect(countersignature).toEqual(await countersignReceipt(hub.privateKey, signed.hash));
    expect(await verifyCountersignature((await importReceiptVerifyKey(hub.publicKey))!, signed.hash, countersignature)).toBe(true);
    expect(await verifyReceiptSignature((await importReceiptVerifyKey(agent.publicKey))!, signed.hash, signed.signature)).toBe(true);
  });

  it("refuses a forged or altered signature, another key and malformed input, never throwing", async () => {
    const agent = (await generateAgentKeyPair()).pair;
    const other = (await generateAgentKeyPair()).pair;
    const signed = await signReceipt(agent.privateKey, receipt);
    const key = receiptVerifyKeyObject(agent.publicKey)!;
    const altered = Uint8Array.from(signed.signature);
    altered[10]! ^= 1;
    expect(await verifyReceiptSignatureAsync(key, signed.hash, altered)).toBe(false);
    const otherHash = receiptHashSync(encodeReceipt({ ...receipt, chargeMicros: 1235n }));
    expect(await verifyReceiptSignatureAsync(key, otherHash, signed.signature)).toBe(false);
    expect(await verifyReceiptSignatureAsync(receiptVerifyKeyObject(other.publicKey)!, signed.hash, signed.signature)).toBe(false);
    expect(await verifyReceiptSignatureAsync(key, signed.hash, signed.signature.subarray(0, 63))).toBe(false);
    // A countersignature is not an agent's signature (another prefix), even with the same key and hash.
    const asHub = await countersignReceiptAsync(KeyObject.from(agent.privateKey), signed.hash);
    expect(await verifyReceiptSignatureAsync(key, signed.hash, asHub)).toBe(false);
    expect(receiptVerifyKeyObject(toBase64Url(new Uint8Array(31)))).toBeNull();
    expect(receiptVerifyKeyObject("not base64url!")).toBeNull();
  });
});
