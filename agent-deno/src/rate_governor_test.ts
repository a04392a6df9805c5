import assert from "node:assert/strict";
import { AUTO_CEILING_SHARE, parseDurationMs, RATE_WINDOW_MS, RateGovernor, readProviderLimits, type RateTicket } from "./rate_governor.ts";

/** A provider key's limit as OpenAI and Anthropic describe it (and the mock provider runs it): a bucket of `rpm` refilled continuously. */
class ProviderBucket {
  #level: number;
  #at = 0;
  constructor(readonly rpm: number) {
    this.#level = rpm;
  }
  /** null = served; else the wait until one request fits, ms. */
  take(now: number): number | null {
    this.#level = Math.min(this.rpm, this.#level + ((now - this.#at) * this.rpm) / RATE_WINDOW_MS);
    this.#at = now;
    if (this.#level >= 1) {
      this.#level -= 1;
      return null;
    }
    return Math.ceil(((1 - this.#level) * RATE_WINDOW_MS) / this.rpm);
  }
  remaining(): number {
    return Math.floor(this.#level);
  }
}

interface Sent {
  at: number;
  status: number;
}

/**
 * The hub offers `demandRpm` requests per minute for `minutes`; the agent admits or refuses each; the provider
 * answers `latencyMs` later. `headers`: the provider sends its rate-limit headers on every answer (as OpenAI
 * and Anthropic do); without, the agent has only 429s and `retry-after` to go by.
 */
function simulate(opts: { providerRpm: number; demandRpm: number; minutes: number; latencyMs: number; headers: boolean; governor?: RateGovernor }) {
  let now = 0;
  const governor = opts.governor ?? new RateGovernor({ now: () => now, wallNow: () => now });
  const provider = new ProviderBucket(opts.providerRpm);
  const pending: { at: number; ticket: RateTicket; status: number; headers: Map<string, string> }[] = [];
  const sent: Sent[] = [];
  const stepMs = RATE_WINDOW_MS / opts.demandRpm;
  let nextOffer = 0;
  let id = 0;
  const end = opts.minutes * RATE_WINDOW_MS;
  while (now < end) {
    const next = Math.min(nextOffer, pending[0]?.at ?? Infinity);
    now = next;
    if (pending.length > 0 && pending[0]!.at <= now) {
      const p = pending.shift()!;
      governor.observe(p.ticket, p.status, (n) => p.headers.get(n) ?? null);
      governor.release(p.ticket);
      continue;
    }
    nextOffer += stepMs;
    const a = governor.admit(`req_${id++}`, 400);
    if (!a.ok) continue;
    const wait = provider.take(now);
    const headers = new Map<string, string>();
    if (wait !== null) {
      headers.set("retry-after", String(Math.max(1, Math.ceil(wait / 1000))));
      headers.set("retry-after-ms", String(wait));
    }
    if (opts.headers) {
      headers.set("x-ratelimit-limit-requests", String(opts.providerRpm));
      headers.set("x-ratelimit-remaining-requests", String(provider.remaining()));
      headers.set("x-ratelimit-reset-requests", `${(RATE_WINDOW_MS / opts.providerRpm / 1000).toFixed(3)}s`);
    }
    const status = wait === null ? 200 : 429;
    sent.push({ at: now, status });
    pending.push({ at: now + opts.latencyMs, ticket: a.ticket, status, headers });
  }
  return { sent, governor };
}

function after(sent: Sent[], fromMs: number, toMs = Infinity) {
  const s = sent.filter((x) => x.at >= fromMs && x.at < toMs);
  const limited = s.filter((x) => x.status === 429).length;
  return { sent: s.length, ok: s.length - limited, limited };
}

for (const headers of [false, true]) {
  Deno.test(
    `rate governor, auto mode ${headers ? "with" : "without"} the provider's rate-limit headers: settles near the provider's RPM within a minute, < 5% 429s after`,
    () => {
      const X = 120;
      const { sent } = simulate({ providerRpm: X, demandRpm: 4 * X, minutes: 10, latencyMs: 300, headers });
      // From the second minute on: every minute served near X (the provider's bucket holds X, so a minute after a
      // slower one may serve a little more), and few 429s.
      for (let minute = 1; minute < 10; minute++) {
        const m = after(sent, minute * RATE_WINDOW_MS, (minute + 1) * RATE_WINDOW_MS);
        assert.ok(m.ok >= 0.85 * X, `minute ${minute}: ${m.ok} served of X=${X}`);
      }
      const rest = after(sent, RATE_WINDOW_MS);
      assert.ok(rest.ok <= 9 * X + X, `${rest.ok} served in 9 minutes at X=${X}`);
      assert.ok(rest.limited / rest.sent < 0.05, `${rest.limited} of ${rest.sent} answered 429 after the first minute`);
      // The first minute is where it learns: without headers it meets 429s, with them it needs none.
      if (headers) assert.equal(after(sent, 0).limited, 0);
      else assert.ok(after(sent, 0, RATE_WINDOW_MS).limited > 0);
    },
  );
}

Deno.test("rate governor, auto mode without headers, a slow provider (2 s answers) and a low limit: few 429s, most of the limit used", () => {
  const X = 30;
  const { sent, governor } = simulate({ providerRpm: X, demandRpm: 20 * X, minutes: 8, latencyMs: 2_000, headers: false });
  const rest = after(sent, RATE_WINDOW_MS);
  assert.ok(rest.limited / rest.sent < 0.05, `${rest.limited} of ${rest.sent} answered 429 after the first minute`);
  assert.ok(rest.ok >= 0.8 * 7 * X, `${rest.ok} served in 7 minutes at X=${X}`);
  assert.ok(governor.rpm! <= 1.2 * X, `rate ${governor.rpm}`);
});

Deno.test("rate governor, expert mode: never more than the owner's RPM in any minute, whatever the demand; refusals say when to retry", () => {
  let now = 0;
  const governor = new RateGovernor({ now: () => now, wallNow: () => now });
  governor.configure({ rateMode: "expert", rpm: 30, tpm: null, concurrency: null });
  const starts: number[] = [];
  let refusedRetry = 0;
  for (now = 0; now < 5 * RATE_WINDOW_MS; now += 50) {
    const a = governor.admit(`r${now}`, 100);
    if (a.ok) {
      starts.push(now);
      governor.observe(a.ticket, 200, () => null);
      governor.release(a.ticket);
    } else {
      assert.equal(a.limit, "rpm");
      assert.ok(a.retryAfterMs > 0 && a.retryAfterMs <= RATE_WINDOW_MS);
      refusedRetry = a.retryAfterMs;
    }
  }
  assert.ok(refusedRetry > 0);
  // Every window of 60 s (any start) holds at most 30 starts.
  for (let i = 0; i < starts.length; i++) {
    const inWindow = starts.filter((s) => s >= starts[i]! && s < starts[i]! + RATE_WINDOW_MS).length;
    assert.ok(inWindow <= 30, `${inWindow} starts in the minute from ${starts[i]}`);
  }
  assert.equal(starts.length, 30 * 5);
});

Deno.test("rate governor, expert mode: concurrency and TPM (estimate on admission, corrected at settlement)", () => {
  let now = 0;
  const governor = new RateGovernor({ now: () => now });
  governor.configure({ rateMode: "expert", rpm: null, tpm: 1_000, concurrency: 2 });
  const a = governor.admit("a", 400); // ~100 tokens
  const b = governor.admit("b", 400);
  assert.ok(a.ok && b.ok);
  const c = governor.admit("c", 400);
  assert.deepEqual(c.ok ? null : c.limit, "concurrency");
  governor.release(a.ticket);
  governor.release(b.ticket);
  // The two used 600 tokens each (output included): the bucket is in debt, refused until it refills.
  governor.settle("a", 600);
  governor.settle("b", 600);
  const d = governor.admit("d", 400);
  assert.ok(!d.ok && d.limit === "tpm", JSON.stringify(d));
  // 200 tokens of debt + 1 at 1,000 per minute: ~12 s.
  assert.ok(d.retryAfterMs > 11_000 && d.retryAfterMs < 13_000, String(d.retryAfterMs));
  now += d.retryAfterMs;
  assert.ok(governor.admit("e", 400).ok);
});

Deno.test("rate governor: a 429's retry-after and a remaining count of zero pause new requests, in both modes", () => {
  let now = 1_000_000;
  const governor = new RateGovernor({ now: () => now, wallNow: () => now });
  governor.configure({ rateMode: "expert", rpm: null, tpm: null, concurrency: null });
  const a = governor.admit("a", 10);
  assert.ok(a.ok);
  governor.observe(a.ticket, 429, (n) => (n === "retry-after" ? "3" : null));
  const refused = governor.admit("b", 10);
  assert.deepEqual(refused, { ok: false, limit: "provider", retryAfterMs: 3_000 });
  assert.equal(governor.state().retryAfterMs, 3_000);
  now += 3_000;
  const c = governor.admit("c", 10);
  assert.ok(c.ok);
  // Anthropic, in auto mode: remaining 0 and an absolute reset time.
  governor.configure({ rateMode: "auto", rpm: null, tpm: null, concurrency: null });
  governor.observe(c.ticket, 200, (n) =>
    n === "anthropic-ratelimit-requests-remaining" ? "0" : n === "anthropic-ratelimit-requests-reset" ? new Date(now + 1_500).toISOString() : null,
  );
  const d = governor.admit("d", 10);
  assert.ok(!d.ok && d.limit === "provider" && d.retryAfterMs === 1_500, JSON.stringify(d));
});

Deno.test("rate governor: reads OpenAI's and Anthropic's headers", () => {
  const h = (m: Record<string, string>) => (n: string) => m[n] ?? null;
  const openai = readProviderLimits(
    h({
      "x-ratelimit-limit-requests": "500",
      "x-ratelimit-remaining-requests": "499",
      "x-ratelimit-reset-requests": "120ms",
      "x-ratelimit-limit-tokens": "30000",
      "x-ratelimit-remaining-tokens": "29000",
      "x-ratelimit-reset-tokens": "1m30.5s",
      "retry-after-ms": "250",
    }),
    0,
  );
  assert.deepEqual(openai, {
    requestsLimit: 500,
    requestsRemaining: 499,
    requestsResetMs: 120,
    tokensLimit: 30000,
    tokensRemaining: 29000,
    tokensResetMs: 90_500,
    retryAfterMs: 250,
  });
  const anthropic = readProviderLimits(
    h({ "anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-tokens-reset": "1970-01-01T00:00:02Z", "retry-after": "7" }),
    1_000,
  );
  assert.equal(anthropic.requestsLimit, 50);
  assert.equal(anthropic.tokensResetMs, 1_000);
  assert.equal(anthropic.retryAfterMs, 7_000);
  assert.equal(parseDurationMs("6m0s"), 360_000);
  assert.equal(parseDurationMs("1s junk"), null);
  assert.equal(parseDurationMs(""), null);
});

Deno.test("rate governor, auto mode: the provider's announced limit is the ceiling, used at AUTO_CEILING_SHARE", () => {
  let now = 0;
  const governor = new RateGovernor({ now: () => now });
  const a = governor.admit("a", 1);
  assert.ok(a.ok);
  assert.equal(governor.rpm, null);
  governor.observe(a.ticket, 200, (n) => (n === "x-ratelimit-limit-requests" ? "1000" : null));
  assert.equal(governor.rpm, Math.floor(1000 * AUTO_CEILING_SHARE));
  assert.deepEqual(governor.state(), { rateMode: "auto", rpm: 980, tpm: null, concurrency: null, retryAfterMs: 0 });
  now += 1;
});

Deno.test("rate governor, auto mode: one 429 on a quiet agent (a request too large) pauses it, and teaches it no rate", () => {
  let now = 1_000_000;
  const governor = new RateGovernor({ now: () => now, wallNow: () => now });
  // A few calls served, then one refused 429 with retry-after 1 s and no rate-limit headers.
  for (let i = 0; i < 3; i++) {
    const a = governor.admit(`ok_${i}`, 10);
    assert.ok(a.ok);
    governor.observe(a.ticket, 200, () => null);
    governor.release(a.ticket);
    now += 1_000;
  }
  const big = governor.admit("too_large", 10);
  assert.ok(big.ok);
  governor.observe(big.ticket, 429, (n) => (n === "retry-after" ? "1" : null));
  governor.release(big.ticket);
  assert.equal(governor.admit("during_pause", 10).ok, false);
  now += 1_000;
  // After the pause: a burst of calls goes through (it was cut to 0.8 × 4 = 3 per minute before the fix).
  for (let i = 0; i < 20; i++) {
    const a = governor.admit(`after_${i}`, 10);
    assert.ok(a.ok, `call ${i} after the pause: ${JSON.stringify(a)}`);
    governor.release(a.ticket);
  }
  assert.equal(governor.state().rpm, null);
});

Deno.test("rate governor, auto mode: paces tokens once the provider announces its TPM, follows its remaining count, gives back nothing at settlement", () => {
  let now = 0;
  const governor = new RateGovernor({ now: () => now, wallNow: () => now });
  // Before any announcement: no TPM (a 40,000-byte body, 10,000 tokens, goes).
  const first = governor.admit("first", 40_000);
  assert.ok(first.ok);
  assert.equal(governor.tpm, null);
  governor.observe(first.ticket, 200, (n) => (n === "x-ratelimit-limit-tokens" ? "10000" : n === "x-ratelimit-remaining-tokens" ? "4000" : null));
  governor.release(first.ticket);
  assert.equal(governor.tpm, Math.floor(10_000 * AUTO_CEILING_SHARE));
  assert.equal(governor.state().tpm, 9_800);
  // The provider says 4,000 are left: the agent keeps its 2% margin below that (3,800). A request counts the larger
  // of its body's estimate and the hub's (which includes the output it asks for): 3,000 here.
  const a = governor.admit("a", 400, 3_000);
  assert.ok(a.ok);
  // 800 left: a request of 1,000 does not fit (the provider would refuse it); one of 800 does.
  const big = governor.admit("big", 400, 1_000);
  assert.ok(!big.ok && big.limit === "tpm", JSON.stringify(big));
  assert.equal(big.retryAfterMs, Math.ceil((200 * 60_000) / 9_800));
  const b = governor.admit("b", 3_200);
  assert.ok(b.ok);
  const c = governor.admit("c", 4);
  assert.ok(!c.ok && c.limit === "tpm", JSON.stringify(c));
  assert.equal(governor.state().retryAfterMs, Math.ceil((1 * 60_000) / 9_800));
  // b used 100 tokens of its 800 estimate: nothing comes back (the provider counted the 800 and keeps them)…
  governor.settle("b", 100);
  assert.equal(governor.admit("d", 4).ok, false);
  // …while a request that used more than its estimate takes the rest (refilled first: 61 s later the bucket is full).
  now += 61_000;
  const e = governor.admit("e", 4_000);
  assert.ok(e.ok);
  governor.settle("e", 9_000);
  // 9,800 − 9,000 = 800 left: a hub's estimate below the body's counts for nothing (3,600 bytes are 900 tokens).
  assert.equal(governor.admit("f0", 3_600, 0).ok, false);
  assert.ok(governor.admit("f1", 3_200, 0).ok);
  // Expert mode ignores what auto mode learnt; back in auto mode the bucket starts full at the learnt rate.
  governor.configure({ rateMode: "expert", rpm: null, tpm: null, concurrency: null });
  assert.equal(governor.tpm, null);
  assert.ok(governor.admit("f2", 400_000).ok);
  governor.configure({ rateMode: "auto", rpm: null, tpm: null, concurrency: null });
  // One request larger than a minute's tokens still goes when the bucket is full, and empties it.
  assert.ok(governor.admit("g", 80_000).ok);
  assert.equal(governor.admit("h", 4).ok, false);
});

Deno.test("rate governor, auto mode: a 429 for tokens pauses the agent and teaches it no request rate", () => {
  let now = 0;
  const governor = new RateGovernor({ now: () => now, wallNow: () => now });
  for (let i = 0; i < 30; i++) {
    const a = governor.admit(`ok_${i}`, 40);
    assert.ok(a.ok);
    governor.observe(a.ticket, 200, () => null);
    governor.release(a.ticket);
    now += 100;
  }
  const t = governor.admit("tokens", 40);
  assert.ok(t.ok);
  governor.observe(t.ticket, 429, (n) =>
    n === "x-ratelimit-remaining-tokens" ? "0" : n === "x-ratelimit-limit-tokens" ? "3000" : n === "retry-after-ms" ? "2500" : null,
  );
  governor.release(t.ticket);
  assert.equal(governor.rpm, null);
  assert.equal(governor.admit("paused", 40).ok, false);
  now += 2_500;
  // The token bucket (2,940 a minute) was brought to the provider's 0 less the margin (−60): 2.5 s of refill later it
  // holds ~62 tokens, so a request of 50 goes and one of 100 waits for tokens, not for a request rate.
  assert.ok(governor.admit("after", 200).ok);
  const waiting = governor.admit("refilling", 400);
  assert.ok(!waiting.ok && waiting.limit === "tpm", JSON.stringify(waiting));
});
