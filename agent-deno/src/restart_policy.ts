/**
 * When the launcher restarts the serving agent: after a crash (any exit but a clean stop or a fatal code),
 * with exponential backoff from RESTART_DELAY_MS_MIN doubling to RESTART_DELAY_MS_MAX; a run that lasted
 * RESTART_STABLE_MS or longer starts the backoff over. Never after the launcher itself was told to stop.
 * Pure: the caller measures how long each run lasted, so tests drive it without a clock.
 */
import { ExitCode, FATAL_EXIT_CODES } from "./exit_codes.ts";

/** First restart delay, ms. */
export const RESTART_DELAY_MS_MIN = 1_000;
/** Longest restart delay, ms. */
export const RESTART_DELAY_MS_MAX = 60_000;
/** A run at least this long counts as stable and resets the backoff, ms. */
export const RESTART_STABLE_MS = 120_000;

export interface AgentExit {
  /** Exit status (128 + n when killed by signal n). */
  code: number;
  /** The signal that killed the agent, if one did. */
  signal: string | null;
}

export type RestartDecision = { restart: true; delayMs: number; attempt: number } | { restart: false; reason: "stopped" | "agent_stopped" | "fatal" };

export class RestartPolicy {
  /** Restarts since the last stable run. */
  #attempt = 0;

  /** Decides after one run of `ranMs` ended with `exit`; `stopping` is true once the launcher got SIGINT/SIGTERM. */
  decide(exit: AgentExit, ranMs: number, stopping: boolean): RestartDecision {
    if (stopping) return { restart: false, reason: "stopped" };
    if (exit.signal === null && exit.code === ExitCode.OK) return { restart: false, reason: "agent_stopped" };
    if (exit.signal === null && FATAL_EXIT_CODES.has(exit.code)) return { restart: false, reason: "fatal" };
    if (ranMs >= RESTART_STABLE_MS) this.#attempt = 0;
    const delayMs = Math.min(RESTART_DELAY_MS_MAX, RESTART_DELAY_MS_MIN * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return { restart: true, delayMs, attempt: this.#attempt };
  }
}
