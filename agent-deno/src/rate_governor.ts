/**
 * The agent's own rate limits for its provider key: the last line of defence, held even if the hub misbehaves.
 *
 * Expert mode: the owner's requests per minute, tokens per minute and requests in flight (CONTROL CONFIG). The
 * RPM is a sliding window — at most `rpm` requests start in any 60 s — so the provider never sees more than the
 * owner set; TPM is a debt bucket (admitted while above zero, each request's estimate taken on admission and
 * corrected when its settlement arrives). Auto mode: the agent learns the key's limits from the provider —
 * the `x-ratelimit-*` / `anthropic-ratelimit-*` headers it sends on every answer set a ceiling, a 429 multiplies
 * the rate by `AUTO_DECREASE_FACTOR` (once per burst of 429s), and a rate that is used in full grows by
 * `AUTO_INCREASE_PER_SUCCESS` per success (AIMD) up to the ceiling. Tokens in auto mode: once the provider
 * announces its token limit (OpenAI's `x-ratelimit-limit-tokens`, Anthropic's `anthropic-ratelimit-tokens-limit`,
 * sent on every answer), the agent paces tokens itself with the same debt bucket as expert mode at
 * `AUTO_CEILING_SHARE` of it, brought down to the provider's `remaining-tokens` whenever that is lower (the key
 * may be used elsewhere too), admitting a request only when its whole estimate fits and giving back nothing a
 * request did not use, as the providers do. In both modes a 429, a `retry-after` or a remaining count of zero pauses new
 * requests until the provider said it has room.
 *
 * Time comes from an injected clock (tests drive it); nothing here sleeps.
 */
import type { AgentConfig, RateState } from "../../protocol/src/mod.ts";

/** The RPM window, ms. */
export const RATE_WINDOW_MS = 60_000;
/** Auto mode: on a 429 the rate becomes this share of what it was (or of what was sent in the last minute). */
export const AUTO_DECREASE_FACTOR = 0.8;
/** Auto mode: requests per minute added per successful answer while the rate is used in full. */
export const AUTO_INCREASE_PER_SUCCESS = 0.05;
/** Auto mode: the share of the provider's announced limit the agent uses (the owner may use the key elsewhere too). */
export const AUTO_CEILING_SHARE = 0.98;
/** Auto mode: the rate counts as used in full when this share of it was sent in the last minute. */
export const AUTO_SATURATION_SHARE = 0.9;
/**
 * Auto mode paces requests: besides the window, a bucket holding this many seconds of the rate, so a minute's
 * requests are spread over it rather than sent in a burst that a provider's bucket may refuse.
 */
export const AUTO_PACE_BURST_SECONDS = 10;
/** The lowest rate auto mode goes down to, requests per minute. */
export const AUTO_RPM_MIN = 1;
/**
 * Requests sent in the last minute below which a 429 teaches auto mode nothing about the rate (it only pauses): a
 * quiet agent's 429 is a request too large for the key's TPM or an account-level refusal, and cutting the rate to
 * 0.8 × a handful would hold the key to a request a minute for hours.
 */
export const AUTO_DECREASE_SENT_MIN = 10;
/** A 429 without `retry-after`: pause this long, ms. */
export const PROVIDER_PAUSE_MS_DEFAULT = 1_000;
/** Longest pause a provider's header can impose, ms (a bad header cannot stop the agent for hours). */
export const PROVIDER_PAUSE_MS_MAX = 120_000;
/** At the concurrency limit: the wait the refusal suggests, ms (a slot frees when any call ends). */
export const CONCURRENCY_RETRY_MS = 1_000;
/** Request starts remembered for the window (bounds memory at any rate). */
export const RATE_LOG_ENTRIES_MAX = 100_000;
/** Token estimates kept for correction at settlement (all dropped when full). */
export const TOKEN_ESTIMATES_MAX = 10_000;
/** Tokens a request is estimated at when its body length is unknown (chunked). */
export const TOKENS_ESTIMATE_UNKNOWN_BODY = 1_024;
/** Body bytes per token for the admission estimate (corrected at settlement). */
export const BODY_BYTES_PER_TOKEN = 4;

export type RateLimitName = "rpm" | "tpm" | "concurrency" | "provider";

export type Admission = { ok: true; ticket: RateTicket } | { ok: false; limit: RateLimitName; retryAfterMs: number };

/** One admitted request, from admission to its end. */
export interface RateTicket {
  readonly requestId: string;
  readonly startedAtMs: number;
  released: boolean;
}

/** Reads one response header (lower-case name). */
export type HeaderGet = (name: string) => string | null;

/** What a provider's rate-limit headers say (null = not sent). */
export interface ProviderLimits {
  requestsLimit: number | null;
  requestsRemaining: number | null;
  requestsResetMs: number | null;
  tokensLimit: number | null;
  tokensRemaining: number | null;
  tokensResetMs: number | null;
  retryAfterMs: number | null;
}

/** OpenAI's reset durations: `1s`, `6m0s`, `20ms`, `1m30.5s`, `2h1m`. Null when unreadable. */
export function parseDurationMs(text: string): number | null {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const n = Number(m[1]);
    total += m[2] === "ms" ? n : m[2] === "s" ? n * 1000 : m[2] === "m" ? n * 60_000 : n * 3_600_000;
    matched = re.lastIndex;
  }
  return matched > 0 && matched === text.length ? Math.ceil(total) : null;
}

function intHeader(get: HeaderGet, name: string): number | null {
  const v = get(name);
  if (v === null || !/^\d{1,12}$/.test(v.trim())) return null;
  return Number(v.trim());
}

/** A reset given as an RFC 3339 time (Anthropic) or a duration (OpenAI), as ms from `nowMs`. */
function resetHeader(get: HeaderGet, name: string, nowMs: number): number | null {
  const v = get(name)?.trim();
  if (!v) return null;
  const duration = parseDurationMs(v);
  if (duration !== null) return duration;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - nowMs) : null;
}

/** Reads OpenAI's and Anthropic's rate-limit headers and `retry-after(-ms)`. `nowMs`: the wall clock, for Anthropic's reset times. */
export function readProviderLimits(get: HeaderGet, nowMs: number): ProviderLimits {
  const retryMs = get("retry-after-ms");
  const retryS = get("retry-after")?.trim() ?? null;
  let retryAfterMs: number | null = null;
  if (retryMs !== null && /^\d+(\.\d+)?$/.test(retryMs.trim())) retryAfterMs = Math.ceil(Number(retryMs));
  else if (retryS !== null && /^\d+(\.\d+)?$/.test(retryS)) retryAfterMs = Math.ceil(Number(retryS) * 1000);
  else if (retryS !== null && Number.isFinite(Date.parse(retryS))) retryAfterMs = Math.max(0, Date.parse(retryS) - nowMs);
  const first = (...values: (number | null)[]) => values.find((v) => v !== null) ?? null;
  return {
    requestsLimit: first(intHeader(get, "x-ratelimit-limit-requests"), intHeader(get, "anthropic-ratelimit-requests-limit")),
    requestsRemaining: first(intHeader(get, "x-ratelimit-remaining-requests"), intHeader(get, "anthropic-ratelimit-requests-remaining")),
    requestsResetMs: first(resetHeader(get, "x-ratelimit-reset-requests", nowMs), resetHeader(get, "anthropic-ratelimit-requests-reset", nowMs)),
    tokensLimit: first(intHeader(get, "x-ratelimit-limit-tokens"), intHeader(get, "anthropic-ratelimit-tokens-limit")),
    tokensRemaining: first(intHeader(get, "x-ratelimit-remaining-tokens"), intHeader(get, "anthropic-ratelimit-tokens-remaining")),
    tokensResetMs: first(resetHeader(get, "x-ratelimit-reset-tokens", nowMs), resetHeader(get, "anthropic-ratelimit-tokens-reset", nowMs)),
    retryAfterMs,
  };
}

export interface RateGovernorOptions {
  /** Monotonic clock, ms (default `performance.now`-based). */
  now?: () => number;
  /** Wall clock, ms, for Anthropic's absolute reset times (default `Date.now`). */
  wallNow?: () => number;
}

export class RateGovernor {
  readonly #now: () => number;
  readonly #wallNow: () => number;
  #mode: AgentConfig["rateMode"] = "auto";
  /** Expert: the owner's limits. */
  #expert: { rpm: number | null; tpm: number | null; concurrency: number | null } = { rpm: null, tpm: null, concurrency: null };
  /** Auto: the rate in force (fractional: grows a little per success), null = none learnt yet. */
  #autoRpm: number | null = null;
  /** Auto: what the provider announced (x-ratelimit-limit-*). */
  #ceilingRpm: number | null = null;
  #ceilingTpm: number | null = null;
  /** Auto: requests started before this do not lower the rate again (one decrease per burst of 429s). */
  #lastDecreaseAtMs = -Infinity;
  /** No new request before this (the provider said so). */
  #pausedUntilMs = -Infinity;
  /** Start times of the requests of the last window, oldest first (a ring read from `#head`). */
  #starts: number[] = [];
  #head = 0;
  #inFlight = 0;
  /** Auto: the pacing bucket (requests), refilled at the rate. */
  #pace = Infinity;
  #paceAtMs = 0;
  /** TPM (expert, or auto once learnt): a debt bucket, tokens; refilled at tpm per minute up to tpm. */
  #tokens = 0;
  #tokensAtMs = 0;
  readonly #estimates = new Map<string, number>();

  constructor(options: RateGovernorOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#wallNow = options.wallNow ?? (() => Date.now());
  }

  get mode(): AgentConfig["rateMode"] {
    return this.#mode;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** The owner's configuration (CONFIG): expert limits, or auto. Requests already admitted are not affected. */
  configure(config: AgentConfig): void {
    this.#mode = config.rateMode;
    if (config.rateMode === "expert") {
      const tpmChanged = config.tpm !== this.#expert.tpm;
      this.#expert = { rpm: config.rpm, tpm: config.tpm, concurrency: config.concurrency };
      if (tpmChanged && config.tpm !== null) {
        this.#tokens = config.tpm;
        this.#tokensAtMs = this.#now();
      }
    } else {
      this.#expert = { rpm: null, tpm: null, concurrency: null };
      const tpm = this.tpm;
      if (tpm !== null) {
        this.#tokens = tpm;
        this.#tokensAtMs = this.#now();
      }
    }
  }

  /** The tokens-per-minute limit in force, null = none (auto: none until the provider announces its own). */
  get tpm(): number | null {
    if (this.#mode === "expert") return this.#expert.tpm;
    return this.#ceilingTpm === null ? null : Math.max(1, Math.floor(this.#ceilingTpm * AUTO_CEILING_SHARE));
  }

  /** The requests-per-minute limit in force, null = none. */
  get rpm(): number | null {
    if (this.#mode === "expert") return this.#expert.rpm;
    return this.#autoRpm === null ? null : Math.max(AUTO_RPM_MIN, Math.floor(this.#autoRpm));
  }

  /** Requests started in the last window. */
  sentLastWindow(): number {
    this.#expire(this.#now());
    return this.#starts.length - this.#head;
  }

  /**
   * May a request start now? `bodyBytes` (null = unknown) gives its token estimate for the TPM, raised to the hub's
   * `hubEstimate` (which counts the output the request asks for) when that is larger: a hub can add to what the
   * agent counts, never take from it. An admitted request holds its slot until `release`.
   */
  admit(requestId: string, bodyBytes: number | null, hubEstimate: number | null = null): Admission {
    const now = this.#now();
    if (now < this.#pausedUntilMs) return { ok: false, limit: "provider", retryAfterMs: Math.ceil(this.#pausedUntilMs - now) };
    const concurrency = this.#mode === "expert" ? this.#expert.concurrency : null;
    if (concurrency !== null && this.#inFlight >= concurrency) return { ok: false, limit: "concurrency", retryAfterMs: CONCURRENCY_RETRY_MS };
    this.#expire(now);
    const rpm = this.rpm;
    const sent = this.#starts.length - this.#head;
    if (rpm !== null && sent >= rpm) {
      // The start that must leave the window before one more fits.
      const leaving = this.#starts[this.#head + (sent - rpm)]!;
      return { ok: false, limit: "rpm", retryAfterMs: Math.max(1, Math.ceil(leaving + RATE_WINDOW_MS - now)) };
    }
    if (rpm !== null && this.#mode === "auto") {
      const burst = Math.max(1, (rpm * AUTO_PACE_BURST_SECONDS) / 60);
      this.#pace = Math.min(burst, this.#pace + ((now - this.#paceAtMs) * rpm) / RATE_WINDOW_MS);
      this.#paceAtMs = now;
      if (this.#pace < 1) return { ok: false, limit: "rpm", retryAfterMs: Math.max(1, Math.ceil(((1 - this.#pace) * RATE_WINDOW_MS) / rpm)) };
    }
    const tpm = this.tpm;
    const estimate = Math.max(bodyBytes === null ? TOKENS_ESTIMATE_UNKNOWN_BODY : Math.ceil(bodyBytes / BODY_BYTES_PER_TOKEN), hubEstimate ?? 0);
    if (tpm !== null) {
      this.#refillTokens(now, tpm);
      // Expert: a debt bucket, as the hub counts the owner's limit. Auto: the provider refuses a request larger than
      // what is left (OpenAI and Anthropic count input plus requested output up front), so the whole estimate must
      // fit (capped at the limit, so one request larger than a minute's tokens still goes when the bucket is full).
      const need = this.#mode === "auto" ? Math.min(estimate, tpm) : 1;
      if (this.#tokens < need || this.#tokens <= 0) {
        return { ok: false, limit: "tpm", retryAfterMs: Math.max(1, Math.ceil(((need - this.#tokens) * RATE_WINDOW_MS) / tpm)) };
      }
      this.#tokens -= estimate;
      // Settlements normally remove their estimate; without them (billing off) the map is dropped whole when full
      // (those requests keep their estimate: removing the oldest one by one costs a scan over deleted entries).
      if (this.#estimates.size >= TOKEN_ESTIMATES_MAX) this.#estimates.clear();
      this.#estimates.set(requestId, estimate);
    }
    this.#record(now);
    if (rpm !== null && this.#mode === "auto") this.#pace -= 1;
    this.#inFlight++;
    return { ok: true, ticket: { requestId, startedAtMs: now, released: false } };
  }

  /** The request ended (any way): its concurrency slot is free. */
  release(ticket: RateTicket): void {
    if (ticket.released) return;
    ticket.released = true;
    this.#inFlight--;
  }

  /**
   * The hub settled a request: its token estimate is replaced by the tokens it used (expert). In auto mode only a
   * request that used more than its estimate takes the rest: the providers count the output a request asks for up
   * front and give nothing back, and their remaining count on every answer corrects the bucket.
   */
  settle(requestId: string, tokens: number): void {
    const estimate = this.#estimates.get(requestId);
    if (estimate === undefined) return;
    this.#estimates.delete(requestId);
    const tpm = this.tpm;
    if (tpm === null) return;
    if (this.#mode === "auto") this.#tokens -= Math.max(0, tokens - estimate);
    else this.#tokens = Math.min(tpm, this.#tokens - (tokens - estimate));
  }

  /** The provider's response head for an admitted request: its status and rate-limit headers. */
  observe(ticket: RateTicket, status: number, get: HeaderGet): void {
    const now = this.#now();
    const p = readProviderLimits(get, this.#wallNow());
    const pause = (ms: number | null) => {
      if (ms === null) return;
      this.#pausedUntilMs = Math.max(this.#pausedUntilMs, now + Math.min(ms, PROVIDER_PAUSE_MS_MAX));
    };
    if (status === 429) pause(p.retryAfterMs ?? p.requestsResetMs ?? PROVIDER_PAUSE_MS_DEFAULT);
    if (p.requestsRemaining === 0) pause(p.requestsResetMs ?? p.retryAfterMs);
    if (p.tokensRemaining === 0) pause(p.tokensResetMs ?? p.retryAfterMs);
    if (p.requestsLimit !== null && p.requestsLimit > 0) this.#ceilingRpm = p.requestsLimit;
    if (p.tokensLimit !== null && p.tokensLimit > 0) {
      const learnt = this.#ceilingTpm === null;
      this.#ceilingTpm = p.tokensLimit;
      if (learnt && this.#mode === "auto") {
        // The bucket starts full at the limit; what the provider says is left brings it down just below.
        this.#tokens = this.tpm!;
        this.#tokensAtMs = now;
      }
    }
    if (this.#mode !== "auto") return;
    const tpm = this.tpm;
    if (tpm !== null && p.tokensRemaining !== null) {
      this.#refillTokens(now, tpm);
      this.#tokens = Math.min(this.#tokens, p.tokensRemaining - this.#ceilingTpm! * (1 - AUTO_CEILING_SHARE));
    }
    const ceiling = this.#ceilingRpm === null ? Infinity : Math.max(AUTO_RPM_MIN, Math.floor(this.#ceilingRpm * AUTO_CEILING_SHARE));
    if (status === 429) {
      // A provider that announces its limit paces the agent by it and by its pauses: the 429 is not a rate to learn;
      // nor is a 429 for tokens (remaining tokens 0), which the token bucket paces.
      if (
        this.#ceilingRpm === null &&
        p.tokensRemaining !== 0 &&
        ticket.startedAtMs >= this.#lastDecreaseAtMs &&
        this.sentLastWindow() >= AUTO_DECREASE_SENT_MIN
      ) {
        const base = Math.min(this.#autoRpm ?? Infinity, this.sentLastWindow());
        this.#autoRpm = Math.max(AUTO_RPM_MIN, Math.min(ceiling, Math.floor(base * AUTO_DECREASE_FACTOR)));
        this.#lastDecreaseAtMs = now;
      }
      return;
    }
    if (status >= 200 && status < 300) {
      if (ceiling !== Infinity) {
        // The provider's own figure is authoritative: what a 429 taught before it was known no longer holds.
        this.#autoRpm = ceiling;
        return;
      }
      if (this.#autoRpm === null) {
        if (ceiling !== Infinity) this.#autoRpm = ceiling;
        return;
      }
      if (this.sentLastWindow() >= this.#autoRpm * AUTO_SATURATION_SHARE) this.#autoRpm += AUTO_INCREASE_PER_SUCCESS;
      this.#autoRpm = Math.min(this.#autoRpm, ceiling);
    }
  }

  /** What the agent reports to the hub (CONTROL RATE_STATE). */
  state(): RateState {
    const now = this.#now();
    let retryAfterMs = 0;
    if (now < this.#pausedUntilMs) retryAfterMs = Math.ceil(this.#pausedUntilMs - now);
    else {
      this.#expire(now);
      const rpm = this.rpm;
      const sent = this.#starts.length - this.#head;
      if (rpm !== null && sent >= rpm) retryAfterMs = Math.max(1, Math.ceil(this.#starts[this.#head + (sent - rpm)]! + RATE_WINDOW_MS - now));
      const tpm = this.tpm;
      if (tpm !== null) {
        this.#refillTokens(now, tpm);
        if (this.#tokens <= 0) retryAfterMs = Math.max(retryAfterMs, Math.ceil(((1 - this.#tokens) * RATE_WINDOW_MS) / tpm));
      }
    }
    const cap = (n: number | null) => (n === null ? null : Math.min(100_000_000, Math.max(1, Math.floor(n))));
    return this.#mode === "expert"
      ? {
          rateMode: "expert",
          rpm: this.#expert.rpm,
          tpm: this.#expert.tpm,
          concurrency: this.#expert.concurrency,
          retryAfterMs: Math.min(retryAfterMs, 86_400_000),
        }
      : { rateMode: "auto", rpm: cap(this.rpm), tpm: cap(this.tpm), concurrency: null, retryAfterMs: Math.min(retryAfterMs, 86_400_000) };
  }

  #refillTokens(now: number, tpm: number): void {
    this.#tokens = Math.min(tpm, this.#tokens + ((now - this.#tokensAtMs) * tpm) / RATE_WINDOW_MS);
    this.#tokensAtMs = now;
  }

  #record(now: number): void {
    this.#starts.push(now);
    if (this.#starts.length - this.#head > RATE_LOG_ENTRIES_MAX) this.#head++;
    this.#compact();
  }

  #expire(now: number): void {
    const from = now - RATE_WINDOW_MS;
    while (this.#head < this.#starts.length && this.#starts[this.#head]! <= from) this.#head++;
    this.#compact();
  }

  #compact(): void {
    if (this.#head > 1024 && this.#head * 2 > this.#starts.length) {
      this.#starts = this.#starts.slice(this.#head);
      this.#head = 0;
    }
  }
}
