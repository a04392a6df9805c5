/**
 * The operations layer: every change an operator, an owner or a user makes outside the request path — keys,
 * enrollment tokens, agents, accounts, prices, plans and tier shares, money in and out, risk decisions — each
 * one transaction with its audit event and the hub event gateways follow. The CLI, the admin API and the
 * portal all call these, so an operation is written once. Also what those callers read of the ledger.
 */
export { recordAudit, type Actor } from "./audit.ts";
export { hashKey, issueKey, KEY_PREFIX, restrictKey, revokeKey, revokeKeyIn, type KeyOptions, type KeyRestriction } from "./keys.ts";
export { createEnrollmentToken, enrollCommand, enrollSteps, ENROLLMENT_TOKEN_TTL_MS, STARTER_CONFIG, type EnrollSteps } from "./enrollment.ts";
export {
  AGENT_RATE_LIMIT_MAX,
  AgentLockedError,
  changeAgent,
  changeOwnAgent,
  decideDiscountLane,
  DISCOUNT_LANE_NOTE_CHARS_MAX,
  discountLaneRequests,
  lastDiscountLaneDecision,
  parseAgentRateSettings,
  revokeAgent,
  setOwnAgentRate,
  type AgentChange,
  type AgentRateSettings,
  type AgentTier,
} from "./agents.ts";
export { degradedLimitsGateways, GATEWAY_ALIVE_WITHIN_MS, type DegradedLimitsGateway } from "./gateways.ts";
export { liveBreakers, type AgentBreakerView } from "./breakers.ts";
export { CANARY_SUMMARY_WINDOW_MS, canaryRecommendation, canarySummaries, type AgentCanarySummary, type CanaryRecommendation } from "./canaries.ts";
export { ensureUser, setUserPlan, setUserStatus } from "./users.ts";
export {
  administratorExists,
  AdministratorInputError,
  completeSetup,
  createAdministrator,
  issueSetupToken,
  SETUP_TOKEN_TTL_MS,
  type AdministratorErrors,
  type SetupOutcome,
} from "./administrators.ts";
export { knownModelNames, unknownModelNames } from "./models.ts";
export {
  publishRelease,
  readKeySet,
  readReleaseDir,
  setReleasePolicy,
  updateRequiredNotice,
  versionRefusal,
  type PublishInput,
  type ReleasePolicy,
  type UpdateRequiredNotice,
} from "./releases.ts";
export { createPlan, publishPrices, setTierShare, type NewPlan } from "./prices.ts";
export {
  actOnFlag,
  decideFlag,
  FLAG_ACTIONS,
  FLAG_NOTE_CHARS_MAX,
  flagReview,
  listRiskFlags,
  type FlagAction,
  type FlagActionResult,
  type FlagDecision,
  type FlagReview,
} from "./risk.ts";
export { ContentRules, type ContentScreen } from "../risk/content_screen.ts";
export { addContentRule, ContentRuleError, listContentRules, removeContentRule } from "./content_rules.ts";
export { audit, Treasury, type EarningsDay } from "./treasury.ts";
export { Ledger, walletBalance, type AuditReport } from "../billing/ledger.ts";
export { officialCostMicros, planPrice, Tariffs, type PlanView } from "../billing/prices.ts";
export { payoutAmountProblem, PAYOUT_MICROS_MIN } from "../billing/payout_minimum.ts";
export { formatRate, formatUsd, parseUsd } from "../billing/money.ts";
export { raiseRiskFlag, RISK_EVIDENCE_BYTES_MAX, type RaisedFlag, type RiskFlagInput } from "../risk/flags.ts";
export { heldEarnings, holdReasonText, type HeldEarnings } from "../risk/earning_holds.ts";
export { DUPLICATE_AGENT_IDENTITY, DUPLICATE_WARNING_WINDOW_MS, duplicateWarningOf, type DuplicateWarning } from "../risk/duplicate_identity.ts";
export { agentLedgerSummaries, type AgentLedgerSummary } from "./agent_ledger.ts";
export { ENDPOINT_FORBIDDEN, ENDPOINT_WARNING_WINDOW_MS, endpointWarningOf, type EndpointWarning } from "../risk/endpoint_forbidden.ts";
export { PAYOUT_DESTINATION_CHARS_MAX, recordAccountSeen, setPayoutDestination, type AccountSeen } from "./account_links.ts";
