import assert from "node:assert/strict";
import { ExitCode } from "./exit_codes.ts";
import { RESTART_DELAY_MS_MAX, RESTART_DELAY_MS_MIN, RESTART_STABLE_MS, RestartPolicy } from "./restart_policy.ts";

const crash = { code: 1, signal: null };
const killed = { code: 137, signal: "SIGKILL" };

Deno.test("restart policy: a crash is restarted with a delay that doubles up to the cap", () => {
  const policy = new RestartPolicy();
  const delays: number[] = [];
  for (let i = 0; i < 9; i++) {
    const d = policy.decide(i % 2 ? killed : crash, 500, false);
    assert.ok(d.restart);
    delays.push(d.delayMs);
  }
  assert.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
  assert.equal(delays[0], RESTART_DELAY_MS_MIN);
  assert.equal(delays.at(-1), RESTART_DELAY_MS_MAX);
});

Deno.test("restart policy: a stable run starts the backoff over", () => {
  const policy = new RestartPolicy();
  for (let i = 0; i < 4; i++) policy.decide(crash, 10, false);
  const d = policy.decide(crash, RESTART_STABLE_MS, false);
  assert.deepEqual(d, { restart: true, delayMs: RESTART_DELAY_MS_MIN, attempt: 1 });
  const next = policy.decide(crash, RESTART_STABLE_MS - 1, false);
  assert.ok(next.restart && next.delayMs === 2 * RESTART_DELAY_MS_MIN);
});

Deno.test("restart policy: no restart after a stop, a clean exit or a fatal refusal", () => {
  const policy = new RestartPolicy();
  assert.deepEqual(policy.decide(killed, 10, true), { restart: false, reason: "stopped" });
  assert.deepEqual(policy.decide({ code: ExitCode.OK, signal: null }, 10, false), { restart: false, reason: "agent_stopped" });
  for (const code of [ExitCode.REFUSED_BY_HUB, ExitCode.CONFIG, ExitCode.USAGE]) {
    assert.deepEqual(policy.decide({ code, signal: null }, 10, false), { restart: false, reason: "fatal" });
  }
  // A signal's exit status is never mistaken for a fatal code.
  assert.ok(policy.decide({ code: 78, signal: "SIGTERM" }, 10, false).restart);
});
