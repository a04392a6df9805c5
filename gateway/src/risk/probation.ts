/**
 * Probation for new agents: for a period after an agent is enrolled (its `created_at`), its earnings are
 * pending — credited to the owner's earnings account as usual, but not available for payout — and the
 * routing policy gives it a bounded share of traffic (`AGENT_PROBATION_WEIGHT_FACTOR`, routing/policy.ts). When the period ends both lift by themselves: nothing is
 * stored, pending is computed from the agent's age at the moment it is asked (an injected clock in tests).
 */

/** How long a new agent is on probation by default, hours (AGENT_PROBATION_HOURS; 0 turns probation off). */
export const AGENT_PROBATION_HOURS_DEFAULT = 72;
/** The longest probation the setting accepts, hours (30 days). */
export const AGENT_PROBATION_HOURS_MAX = 720;

const MS_PER_HOUR = 3_600_000;

/** The probation period in ms from the environment (AGENT_PROBATION_HOURS, whole hours 0–720), or the default. */
export function agentProbationMs(env: Record<string, string | undefined> = process.env): number {
  const raw = env.AGENT_PROBATION_HOURS;
  if (raw === undefined || raw === "") return AGENT_PROBATION_HOURS_DEFAULT * MS_PER_HOUR;
  const hours = Number(raw);
  if (!Number.isInteger(hours) || hours < 0 || hours > AGENT_PROBATION_HOURS_MAX) {
    throw new RangeError(`AGENT_PROBATION_HOURS must be a whole number of hours from 0 to ${AGENT_PROBATION_HOURS_MAX}, not ${JSON.stringify(raw)}`);
  }
  return hours * MS_PER_HOUR;
}

/** Whether an agent created at `createdAt` is on probation at `now`. */
export function onProbation(createdAt: Date, now: Date, probationMs: number): boolean {
  return now.getTime() - createdAt.getTime() < probationMs;
}
