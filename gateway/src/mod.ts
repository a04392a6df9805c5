/** What other hub processes (the portal) use of the gateway's services: keys, money, enrollment, logging. */
export { issueKey, revokeKey, revokeKeyIn, hashKey, KEY_PREFIX } from "./api/keys.ts";
export { Ledger, inTransaction, userAccount, ownerAccount, walletBalance } from "./billing/ledger.ts";
export { Treasury, audit, type EarningsDay } from "./billing/treasury.ts";
export { officialCostMicros, planPrice, Tariffs, type PlanView } from "./billing/prices.ts";
export { formatRate, formatUsd, parseUsd } from "./billing/money.ts";
export { createEnrollmentToken, enrollCommand } from "./tunnel/enroll.ts";
export { raiseRiskFlag, RISK_EVIDENCE_BYTES_MAX, type RiskFlagInput, type RaisedFlag } from "./risk/flags.ts";
export { DUPLICATE_AGENT_IDENTITY, DUPLICATE_WARNING_WINDOW_MS, duplicateWarningOf, type DuplicateWarning } from "./risk/duplicate_identity.ts";
export { createLogger, type Logger } from "./log.ts";
