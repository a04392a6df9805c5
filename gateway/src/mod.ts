/** What other hub processes (the portal) use of the gateway's services: keys, money, enrollment, logging. */
export { issueKey, hashKey, KEY_PREFIX } from "./api/keys.ts";
export { Ledger, inTransaction, userAccount, ownerAccount, walletBalance } from "./billing/ledger.ts";
export { Treasury, audit, type EarningsDay } from "./billing/treasury.ts";
export { formatMicros, officialCostMicros } from "./billing/pricing.ts";
export { planPrice, Tariffs, type PlanView } from "./billing/tariffs.ts";
export { createEnrollmentToken } from "./tunnel/enroll.ts";
export { createLogger, type Logger } from "./log.ts";
