import assert from "node:assert/strict";
import {
  DUPLICATE_RETRY_BASE_MS,
  DUPLICATE_RETRY_CAP_MS,
  duplicateRetryDelayMs,
  RECONNECT_CAP_MS,
  SUSPENDED_RETRY_MS_DEFAULT,
  suspendedRetryDelayMs,
} from "./tunnel.ts";

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

Deno.test("suspended: the agent asks again after a long wait (5 minutes by default), jittered to half of it at the least", () => {
  assert.equal(SUSPENDED_RETRY_MS_DEFAULT, 5 * 60_000);
  assert.equal(
    suspendedRetryDelayMs(undefined, () => 1),
    SUSPENDED_RETRY_MS_DEFAULT,
  );
  assert.equal(
    suspendedRetryDelayMs(undefined, () => 0),
    SUSPENDED_RETRY_MS_DEFAULT / 2,
  );
  // Far longer than an ordinary reconnect: a suspended agent does not knock every few seconds.
  assert.ok(suspendedRetryDelayMs(undefined, () => 0) > 4 * RECONNECT_CAP_MS);
  // The configured wait (config.json suspendedRetrySeconds) replaces the default.
  assert.equal(
    suspendedRetryDelayMs(2_000, () => 1),
    2_000,
  );
  assert.equal(
    suspendedRetryDelayMs(2_000, () => 0),
    1_000,
  );
  const waits = new Set(Array.from({ length: 20 }, () => suspendedRetryDelayMs()));
  assert.ok(waits.size > 1);
  for (const w of waits) assert.ok(w >= SUSPENDED_RETRY_MS_DEFAULT / 2 && w <= SUSPENDED_RETRY_MS_DEFAULT);
});
