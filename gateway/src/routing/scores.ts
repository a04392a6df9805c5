/**
 * What routing measured of each agent × model lately: latency to the first byte and the error rate, both as
 * exponentially weighted moving averages (each new observation weighs SCORE_ALPHA), so a few minutes of history
 * decide and an agent that recovers is trusted again within tens of requests. Bounded: at most SCORES_MAX pairs
 * are kept (the least recently observed are forgotten).
 */

/** Weight of each new observation in the moving averages. */
export const SCORE_ALPHA = 0.1;
/** Agent × model scores kept at most. */
export const SCORES_MAX = 50_000;
/** Latency to first byte that halves an agent's weight, ms (a typical small call is well under it). */
export const SCORE_TTFB_HALF_WEIGHT_MS = 2_000;

export interface Score {
  /** Moving average of the time from dispatch to the response head, ms; null before the first response. */
  ttfbMs: number | null;
  /** Moving average of failures (1) and successes (0), in [0, 1]. */
  errorRate: number;
  observations: number;
}

export class AgentScores {
  readonly #scores = new Map<string, Score>();

  get(agentId: string, model: string): Score | undefined {
    return this.#scores.get(`${agentId}\n${model}`);
  }

  success(agentId: string, model: string, ttfbMs: number): void {
    const s = this.#touch(agentId, model);
    s.ttfbMs = s.ttfbMs === null ? ttfbMs : s.ttfbMs + SCORE_ALPHA * (ttfbMs - s.ttfbMs);
    s.errorRate += SCORE_ALPHA * (0 - s.errorRate);
  }

  failure(agentId: string, model: string): void {
    const s = this.#touch(agentId, model);
    s.errorRate += SCORE_ALPHA * (1 - s.errorRate);
  }

  /**
   * The agent's weight in (0, 1] from its score: 1 for an unmeasured or fast, error-free agent; halved by
   * SCORE_TTFB_HALF_WEIGHT_MS of latency; scaled by (1 − error rate)², floored so a recovering agent still gets
   * an occasional request.
   */
  weight(agentId: string, model: string): number {
    const s = this.get(agentId, model);
    if (!s) return 1;
    const latency = s.ttfbMs === null ? 1 : 1 / (1 + s.ttfbMs / SCORE_TTFB_HALF_WEIGHT_MS);
    const health = (1 - s.errorRate) ** 2;
    return Math.max(0.01, latency * health);
  }

  #touch(agentId: string, model: string): Score {
    const k = `${agentId}\n${model}`;
    let s = this.#scores.get(k);
    if (s) this.#scores.delete(k);
    else s = { ttfbMs: null, errorRate: 0, observations: 0 };
    s.observations++;
    this.#scores.set(k, s);
    if (this.#scores.size > SCORES_MAX) {
      const oldest = this.#scores.keys().next().value;
      if (oldest !== undefined) this.#scores.delete(oldest);
    }
    return s;
  }
}
