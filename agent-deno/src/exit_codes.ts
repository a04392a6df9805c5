/**
 * How the agent process ends, so the launcher can tell a crash (restart it) from a refusal that a restart
 * cannot cure (stop and say why). Values follow sysexits.h where one fits.
 */
export const ExitCode = {
  /** Stopped on request (SIGINT/SIGTERM, after draining). */
  OK: 0,
  /** Anything unexpected: an uncaught error, a crash. The launcher restarts the agent. */
  FAILED: 1,
  /** The command line was wrong. */
  USAGE: 64,
  /**
   * The hub refuses this agent's version (close 4032, below its minimum). The launcher looks for a signed update
   * at once and restarts the agent (with backoff) whether or not it found one.
   */
  UPDATE_REQUIRED: 75,
  /**
   * The hub refused this agent for good: revoked or unknown (close codes 4012, 4015), or a production hub
   * refusing a development upstream (4033). A suspended agent (4034) keeps running and asks again later.
   */
  REFUSED_BY_HUB: 77,
  /** The local files are missing or invalid: config.json, agent.json, agent-key.pk8, a key variable. */
  CONFIG: 78,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Exits after which the launcher does not restart the agent: the same files would fail the same way. */
export const FATAL_EXIT_CODES: ReadonlySet<number> = new Set([ExitCode.USAGE, ExitCode.REFUSED_BY_HUB, ExitCode.CONFIG]);
