import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { RECEIPT_HUB_RECORD_BYTES_MAX } from "@wellspring/protocol";
import { recordRowJson } from "../api/records.ts";
import { hubRecordJson, loadRebuildKey, openHubRecord, readRebuildKey, sealHubRecord } from "./hub_record.ts";

/** A settlement row as PostgreSQL's row_to_json writes it, every column filled at a realistic length. */
const RESERVATION = JSON.stringify({
  request_id: "req_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  user_id: "usr_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  amount_micros: 1234567,
  status: "settled",
  charge_micros: 123456,
  price_ver: 12,
  plan_id: "pln_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  api: "openai",
  model: "claude-sonnet-4-5-20250929-long-model-name",
  agent_id: "agt_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  owner_id: "usr_01JF8Z3K4M5N6P7Q8R9S0T1U2W",
  tier: "discount",
  tier_bps: 7000,
  earning_micros: 86419,
  input_tokens: 123456,
  output_tokens: 65432,
  cached_input_tokens: 12345,
  estimated: true,
  end_cause: "client_cancelled",
  created_at: "2026-12-02T02:48:24.123+00:00",
  settled_at: "2026-12-02T02:48:24.456+00:00",
  lease_id: "lse_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  audio_seconds: 1234,
  images: 4,
  characters: 123456,
  official_micros: 123456,
  plan_bps: 10000,
  lease_micros: 100000,
  overdraft_micros: 23456,
});

const RECORD = recordRowJson({
  id: "req_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  userId: "usr_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  keyId: "key_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  agentId: "agt_01JF8Z3K4M5N6P7Q8R9S0T1U2V",
  gatewayId: "gw_01JF8Z3K4M5N6P7Q8R9S0T1U2V-hostname",
  route: "/v1/chat/completions",
  provider: "openai",
  model: "claude-sonnet-4-5-20250929-long-model-name",
  streamed: true,
  httpStatus: 200,
  endCause: "client_cancelled",
  bytesIn: 123456789,
  bytesOut: 987654321,
  startedAt: new Date("2026-12-02T02:48:24.001Z"),
  firstByteMs: 12345,
  durationMs: 1234567,
  inputTokens: 123456,
  outputTokens: 65432,
  cachedInputTokens: 12345,
  usageEstimated: true,
  priceVer: 12,
  tier: "discount",
  tierBps: 7000,
  userChargeMicros: 123456n,
  ownerEarningMicros: 86419n,
});

describe("hub records", () => {
  it("seal and open for the request they were sealed for, and only with the hub's key", () => {
    const key = randomBytes(32);
    const plain = hubRecordJson(RESERVATION, RECORD);
    const sealed = sealHubRecord(key, "req_1", plain);
    expect(openHubRecord(key, "req_1", sealed)).toBe(plain);
    expect(JSON.parse(openHubRecord(key, "req_1", sealed)!)).toMatchObject({
      v: 1,
      reservation: { user_id: "usr_01JF8Z3K4M5N6P7Q8R9S0T1U2V" },
      record: { key_id: expect.any(String) },
    });
    // Another request, another key, any flipped byte: it does not open.
    expect(openHubRecord(key, "req_2", sealed)).toBeNull();
    expect(openHubRecord(randomBytes(32), "req_1", sealed)).toBeNull();
    for (let i = 0; i < sealed.length; i++) {
      const bad = sealed.slice();
      bad[i] = bad[i]! ^ 0x40;
      expect(openHubRecord(key, "req_1", bad)).toBeNull();
    }
    expect(openHubRecord(key, "req_1", sealed.subarray(0, 20))).toBeNull();
    // Sealed twice, two different byte strings (a fresh nonce each time): the owner cannot match users by them.
    expect(Buffer.from(sealHubRecord(key, "req_1", plain)).equals(Buffer.from(sealed))).toBe(false);
  });

  it("a record with every column at a realistic length fits a receipt with room to spare", () => {
    const sealed = sealHubRecord(randomBytes(32), "req_01JF8Z3K4M5N6P7Q8R9S0T1U2V", hubRecordJson(RESERVATION, RECORD));
    console.log(`sealed hub record: ${sealed.length} bytes (limit ${RECEIPT_HUB_RECORD_BYTES_MAX})`);
    expect(sealed.length).toBeLessThan(RECEIPT_HUB_RECORD_BYTES_MAX * 0.75);
  });

  it("the rebuild key is made once, mode 0600, and read back as it is", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ws-rebuild-key-"));
    try {
      const file = join(dir, "sub", "rebuild-key.bin");
      await expect(readRebuildKey(file)).rejects.toThrow();
      const key = await loadRebuildKey(file);
      expect(key.length).toBe(32);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
      expect(Buffer.from(await loadRebuildKey(file)).equals(Buffer.from(key))).toBe(true);
      expect(Buffer.from(await readFile(file)).equals(Buffer.from(key))).toBe(true);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
