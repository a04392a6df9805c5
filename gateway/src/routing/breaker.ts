/**
 * Circuit breakers, one per agent × model. A breaker counts the failures routing attributes to an agent
 * serving a model (an error status or refusal before the first byte, a dropped connection, a stream broken
 * mid-body) and stops sending it traffic once they pile up:
 *
 *   closed ──(failuresToOpen failures within failureWindowMs)──▶ open ──(openMs passed)──▶ half-open
 *   half-open: one probe request at a time; its success closes the breaker, its failure opens it again.
 *
 * Time comes from an injected clock, so tests step it instead of sleeping. Memory is bounded: a breaker is kept
 * only while it remembers a failure (closed breakers with no recent failure are dropped), and at most
 * BREAKERS_MAX are kept (the oldest are dropped past that).
 */

export type BreakerState = "closed" | "open" | "half_open";

export interface BreakerOptions {
  /** Failures within the window that open the breaker (default 5). */
  failuresToOpen: number;
  /** Window the failures are counted in, ms (default 30 s). */
  failureWindowMs: number;
  /** Time an open breaker refuses traffic before it lets one probe through, ms (default 15 s). */
  openMs: number;
  /** Longest a half-open probe may take before another probe is let through, ms (default 60 s). */
  probeTimeoutMs: number;
}

export const DEFAULT_BREAKER_OPTIONS: BreakerOptions = { failuresToOpen: 5, failureWindowMs: 30_000, openMs: 15_000, probeTimeoutMs: 60_000 };

/** Agent × model breakers kept at most; beyond it the least recently touched are forgotten. */
export const BREAKERS_MAX = 50_000;

interface Breaker {
  state: BreakerState;
  /** Times of recent failures (closed), at most failuresToOpen of them. */
  failures: number[];
  /** When an open breaker lets a probe through, or when a half-open probe is given up on, ms. */
  untilMs: number;
  /** Times it opened, for the pages. */
  opens: number;
}

export interface BreakerView {
  agentId: string;
  model: string;
  state: BreakerState;
  recentFailures: number;
  /** When an open breaker next lets a probe through (UTC ms), null when closed. */
  retryAtMs: number | null;
}

/** Called when a breaker changes state (metrics, logs). */
export type BreakerListener = (agentId: string, model: string, from: BreakerState, to: BreakerState) => void;

export class CircuitBreakers {
  readonly #breakers = new Map<string, Breaker>();
  readonly #listeners: BreakerListener[] = [];

  constructor(
    readonly options: BreakerOptions = DEFAULT_BREAKER_OPTIONS,
    private readonly now: () => number = Date.now,
  ) {}

  onChange(listener: BreakerListener): void {
    this.#listeners.push(listener);
  }

  /** The state as routing would see it now (an open breaker whose time is up reads half-open). */
  state(agentId: string, model: string): BreakerState {
    const b = this.#breakers.get(key(agentId, model));
    if (!b) return "closed";
    if (b.state === "open" && this.now() >= b.untilMs) return "half_open";
    return b.state;
  }

  /**
   * May a request be routed to this agent for this model now? A closed breaker says yes; an open one no; a
   * half-open one yes once (the probe) until the probe's outcome is recorded or its time runs out.
   * `claim` = false asks without taking the probe (for ordering candidates).
   */
  allows(agentId: string, model: string, claim: boolean): boolean {
    if (this.#breakers.size === 0) return true;
    const k = key(agentId, model);
    const b = this.#breakers.get(k);
    if (!b || b.state === "closed") return true;
    const now = this.now();
    if (now < b.untilMs) return false;
    if (claim) {
      this.#move(k, b, "half_open");
      b.untilMs = now + this.options.probeTimeoutMs;
    }
    return true;
  }

  /** The agent served the model: a response that is not its fault ended whole. */
  success(agentId: string, model: string): void {
    const k = key(agentId, model);
    const b = this.#breakers.get(k);
    if (!b) return;
    if (b.state !== "closed") this.#move(k, b, "closed");
    this.#breakers.delete(k);
  }

  /**
   * A request the breaker let through ended without saying anything of the agent (the client left): a half-open
   * breaker lets its next probe through at once instead of waiting for the probe timeout.
   */
  release(agentId: string, model: string): void {
    const b = this.#breakers.get(key(agentId, model));
    if (b?.state === "half_open") b.untilMs = this.now();
  }

  /** The agent failed the model: counted toward opening; a failed probe opens the breaker again. */
  failure(agentId: string, model: string): void {
    const k = key(agentId, model);
    const now = this.now();
    let b = this.#breakers.get(k);
    if (!b) {
      b = { state: "closed", failures: [], untilMs: 0, opens: 0 };
      this.#remember(k, b);
    } else {
      // Most recently touched last, so the first entries are the ones to forget.
      this.#breakers.delete(k);
      this.#breakers.set(k, b);
    }
    if (b.state === "half_open" || (b.state === "open" && now >= b.untilMs)) {
      this.#open(k, b, now);
      return;
    }
    if (b.state === "open") return;
    const since = now - this.options.failureWindowMs;
    b.failures = b.failures.filter((t) => t > since);
    b.failures.push(now);
    if (b.failures.length >= this.options.failuresToOpen) this.#open(k, b, now);
  }

  /** Breakers that are not closed, or closed with recent failures: what the pages and metrics show. */
  list(): BreakerView[] {
    const out: BreakerView[] = [];
    const now = this.now();
    for (const [k, b] of this.#breakers) {
      const [agentId, model] = split(k);
      const state = this.state(agentId, model);
      out.push({
        agentId,
        model,
        state,
        recentFailures: b.failures.filter((t) => t > now - this.options.failureWindowMs).length,
        retryAtMs: state === "open" ? b.untilMs : null,
      });
    }
    return out;
  }

  #open(k: string, b: Breaker, now: number): void {
    b.failures = [];
    b.untilMs = now + this.options.openMs;
    b.opens++;
    this.#move(k, b, "open");
  }

  #move(k: string, b: Breaker, to: BreakerState): void {
    const from = b.state;
    b.state = to;
    if (from === to) return;
    const [agentId, model] = split(k);
    for (const l of this.#listeners) l(agentId, model, from, to);
  }

  #remember(k: string, b: Breaker): void {
    this.#breakers.set(k, b);
    if (this.#breakers.size <= BREAKERS_MAX) return;
    const oldest = this.#breakers.keys().next().value;
    if (oldest !== undefined) this.#breakers.delete(oldest);
  }
}

// Agent ids never contain a newline; model names are checked by the body scanner and the registry.
function key(agentId: string, model: string): string {
  return `${agentId}\n${model}`;
}

function split(k: string): [string, string] {
  const i = k.indexOf("\n");
  return [k.slice(0, i), k.slice(i + 1)];
}
