/** What other hub processes (the portal) use of the gateway's services: keys, money, enrollment, logging. */
export { issueKey, revokeKey, revokeKeyIn, hashKey, KEY_PREFIX } from "./api/keys.ts";
export { Ledger, inTransaction, userAccount, ownerAccount, walletBalance } from "./billing/ledger.ts";
export { Treasury, audit, type EarningsDay } from "./billing/treasury.ts";
export { formatMicros, officialCostMicros } from "./billing/pricing.ts";
export { planPrice, Tariffs, type PlanView } from "./billing/tariffs.ts";
export { createEnrollmentToken, enrollCommand } from "./tunnel/enroll.ts";
export { enrollSteps, STARTER_CONFIG, type EnrollSteps } from "./tunnel/enroll_steps.ts";
export { raiseRiskFlag, RISK_EVIDENCE_BYTES_MAX, type RiskFlagInput, type RaisedFlag } from "./risk/flags.ts";
export { DUPLICATE_AGENT_IDENTITY, DUPLICATE_WARNING_WINDOW_MS, duplicateWarningOf, type DuplicateWarning } from "./risk/duplicate_identity.ts";
export { createLogger, type Logger } from "./log.ts";
export { administratorExists, completeSetup, createAdministrator, issueSetupToken, AdministratorInputError, SETUP_TOKEN_TTL_MS, type AdministratorErrors, type SetupOutcome } from "./accounts/administrators.ts";
export { formatUsd } from "./format/money.ts";
export { knownModelNames, unknownModelNames } from "./catalog/models.ts";
export { payoutAmountProblem, PAYOUT_MICROS_MIN } from "./billing/payout_minimum.ts";
