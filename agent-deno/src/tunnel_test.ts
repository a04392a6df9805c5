import assert from "node:assert/strict";
import { DUPLICATE_RETRY_BASE_MS, DUPLICATE_RETRY_CAP_MS, duplicateRetryDelayMs } from "./tunnel.ts";

Deno.test("duplicate identity: the refused copy waits long, jittered, doubling up to the cap", () => {
  // The shortest first wait is still far longer than any ordinary reconnect: a copy cannot flap with the live agent.
  assert.equal(
    duplicateRetryDelayMs(1, () => 0),
    DUPLICATE_RETRY_BASE_MS / 2,
  );
  assert.equal(
    duplicateRetryDelayMs(1, () => 1),
    DUPLICATE_RETRY_BASE_MS,
  );
  assert.equal(
    duplicateRetryDelayMs(2, () => 1),
    2 * DUPLICATE_RETRY_BASE_MS,
  );
  assert.equal(
    duplicateRetryDelayMs(50, () => 1),
    DUPLICATE_RETRY_CAP_MS,
  );
  assert.equal(
    duplicateRetryDelayMs(50, () => 0),
    DUPLICATE_RETRY_CAP_MS / 2,
  );
  // Jitter: two copies refused together do not come back together.
  const waits = new Set(Array.from({ length: 20 }, () => duplicateRetryDelayMs(1)));
  assert.ok(waits.size > 1);
  for (const w of waits) assert.ok(w >= DUPLICATE_RETRY_BASE_MS / 2 && w <= DUPLICATE_RETRY_BASE_MS);
});
