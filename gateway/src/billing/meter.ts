/**
 * The billing meter: what the request path calls to charge for a request, twice —
 * `meter.open(request)` before anything goes upstream (holds the request's worst case against the user's
 * balance, in memory against this gateway's credit lease) and `hold.settle(outcome)` when it ends (charges by the
 * rule for how it ended, in full, at the prices it started with; the owner earns official × tier). Between the
 * two, the hold grows with the body (`grow`) and reads the request's and the response's bytes as they pass
 * (`input`, `response`, `output`) to know what was used — without changing or keeping them.
 *
 * With billing off, or on a route the provider does not charge for, `open` holds nothing and `settle` charges
 * nothing; the hold still reads the usage the provider reports, for the request's record.
 */
import type { ApiFamily, BodyFields } from "@wellspring/protocol";
import { chargeBasis, type ChargeBasis } from "./charge_rules.ts";
import { RequestTokenEstimator } from "./estimate.ts";
import type { CreditLeases, LeaseClaim } from "./leases.ts";
import type { ReserveMeta } from "./ledger.ts";
import {
  officialCostMicros,
  ownerEarningMicros,
  planChargeMicros,
  planPrice,
  scaledPricing,
  type ModelPriceMicros,
  type PlanView,
  type PriceBook,
  type PricedModel,
  type Tariffs,
  type Tier,
} from "./prices.ts";
import type { SettleOutcome, SettlementBatcher } from "./settlement_batcher.ts";
import type { EndCause, Usage } from "./usage.ts";
import { checkUsage, type UsageDivergence } from "./usage_check.ts";
import { createUsageTap, type UsageTap } from "./usage_tap.ts";
import { modelLimits, worstUsage, type BillingUnit, type ModelLimits } from "./worst_case.ts";
import type { Logger } from "../log.ts";
import { observeBilling } from "../observability/metrics.ts";
import { LedgerUnavailableError } from "./health.ts";
import { priceToJson, type DeferredHold } from "./deferred.ts";

export interface MeterOptions {
  /** Writes settlements in small batches, off the request path (to the spool while the ledger is away). */
  settlements: SettlementBatcher;
  /** Holds each request's worst case in memory against a slice of the wallet this gateway leased. */
  leases: CreditLeases;
  prices: PriceBook;
  tariffs: Tariffs;
  /** Output cap assumed for a request that sets none, for a model whose maximum is not known, tokens. */
  defaultMaxOutputTokens: number;
  /**
   * Told when a reported usage went beyond what the hub counted (the charge was capped), with the settlement's
   * write: raises the flag and holds the owner's earning (`risk/usage_divergence.ts`). Never awaited by the request.
   */
  onUsageCapped?: (capped: CappedUsage, written: Promise<unknown>) => Promise<void>;
  /**
   * Told of every settled request an owner earns on, with the settlement's write: the self-dealing check
   * (`risk/linked_accounts.ts`). Never awaited by the request.
   */
  onServed?: (served: ServedRequest, written: Promise<unknown>) => Promise<unknown>;
}

/** A settled request an owner earns on (ids and money only). */
export interface ServedRequest {
  requestId: string;
  userId: string;
  agentId: string | null;
  ownerId: string;
  /** The owner's earning on it, µ$. */
  earningMicros: bigint;
}

/** A settlement whose reported usage was capped to the hub's count (counts and ids only). */
export interface CappedUsage {
  requestId: string;
  userId: string;
  agentId: string | null;
  ownerId: string | null;
  model: string;
  divergence: UsageDivergence;
  /** The owner's earning on the capped charge, µ$ (what the hold keeps out of the available earnings). */
  earningMicros: bigint;
  chargeMicros: bigint;
}

/** The model has no official price: it cannot be served while billing is on. */
export class UnpricedModelError extends Error {
  constructor(readonly model: string) {
    super(`The model '${model}' has no price and cannot be served.`);
    this.name = "UnpricedModelError";
  }
}

/** The user's balance does not cover what the request may cost. */
export class InsufficientBalanceError extends Error {
  constructor() {
    super("the balance does not cover this request");
    this.name = "InsufficientBalanceError";
  }
}

export interface MeteredRoute {
  api: ApiFamily;
  /** What the provider bills the route by. */
  unit: BillingUnit;
  /** The body is multipart (no input estimate; images bounded by the route's maximum when `n` is absent). */
  multipart: boolean;
}

export interface HoldRequest {
  requestId: string;
  userId: string;
  /** The user's plan; null = the default plan. */
  planId: string | null;
  route: MeteredRoute;
  model: string;
  /** What the body scanner read; the hold reads it again as the body grows. */
  fields: BodyFields;
  /** Who serves it: the agent, its owner and the tier it settles at now. */
  agent: { agentId: string | null; ownerId: string | null; tier: Tier };
  /** The body's size as far as it is known (Content-Length, or the bytes received so far). */
  inputBytes: number;
  /**
   * A batch: its worst case is the sum of its requests' (`worst`: an OpenAI batch's read from its input file at
   * upload, `batch_input.ts`; an Anthropic Message Batch's growing as its body is read, not the body's own), it is
   * priced at `priceBps` of the price table (`BATCH_PRICE_BPS`, a plan's own price scaled alike), and the create
   * call itself is never charged — its requests are, by the deferred settlement it is handed over to.
   */
  batch?: { worst: () => Usage; priceBps: bigint };
}

/** How the request ended, as the request path saw it. */
export interface Outcome {
  cause: EndCause;
  /** HTTP status the provider answered with; 0 when it never answered. */
  status: number;
  /** The response head reached the gateway. */
  responded: boolean;
  /** The whole request body was sent toward the provider. */
  dispatched: boolean;
}

/** What a request was charged, for its record. */
export interface Charge {
  usage: Usage | null;
  estimated: boolean;
  chargeMicros: bigint | null;
  earningMicros: bigint | null;
  priceVer: number | null;
  tier: Tier | null;
  tierBps: number | null;
  /** What the provider reported, when it reported usage (the agent's receipt records both). */
  reported: Usage | null;
  /**
   * Resolves once the settlement is durable (written, with its settlement row, or in the spool); null when nothing
   * was settled.
   */
  written: Promise<SettleOutcome> | null;
}

/** What a billed request was priced with when it started; it settles with the same, whatever is published meanwhile. */
interface Priced extends PricedModel {
  /** The price it is charged at: the table's (`price`), or a batch's share of it. */
  chargePrice: ModelPriceMicros;
  /** The plan it is charged at: the user's, or for a batch the user's with its own price for the model scaled alike. */
  plan: PlanView;
  /** The user's plan as the table has it (unscaled): what a deferred settlement keeps, it applies its own share. */
  tablePlan: PlanView;
  tier: Tier;
  tierBps: bigint;
  limits: ModelLimits;
  /** The worst case held now, µ$ (it grows with the body). */
  reservedMicros: bigint;
  claim: LeaseClaim;
  meta: ReserveMeta;
}

/** The output cap of a model not in the table when billing is off (`BILLING_DEFAULT_MAX_OUTPUT_TOKENS`' default), tokens. */
const DEFAULT_MAX_OUTPUT_TOKENS = 32_768;

export class Meter {
  constructor(
    private readonly billing: MeterOptions | null,
    private readonly log: Logger,
  ) {}

  get billingOn(): boolean {
    return this.billing !== null;
  }

  /** A model's window and output maximum as holds bound them (the gateway's default output cap for a model not in the table). */
  limitsOf(model: string): ModelLimits {
    return modelLimits(model, this.billing?.defaultMaxOutputTokens ?? DEFAULT_MAX_OUTPUT_TOKENS);
  }

  /**
   * Opens the request's meter. When the request is billed, holds its worst case first; throws
   * UnpricedModelError, InsufficientBalanceError or LedgerUnavailableError before anything went upstream.
   */
  async open(req: HoldRequest): Promise<Hold> {
    const billing = this.billing;
    if (!billing || req.route.unit === "free") return new Hold(req, null, null, this.log);
    const official = await billing.prices.get(req.route.api, req.model);
    if (!official) {
      observeBilling("unpriced");
      throw new UnpricedModelError(req.model);
    }
    const tablePlan = await billing.tariffs.plan(req.planId);
    const tierBps = await billing.tariffs.tierBps(req.agent.tier);
    const limits = modelLimits(req.model, billing.defaultMaxOutputTokens);
    const scaled = req.batch ? scaledPricing(tablePlan, req.route.api, req.model, official.price, req.batch.priceBps) : null;
    const plan = scaled?.plan ?? tablePlan;
    const chargePrice = scaled?.price ?? official.price;
    const amount = worstMicros(req, req.inputBytes, { plan, chargePrice, limits });
    // Held in memory against this gateway's lease on the wallet; a database round trip only to top it up.
    const claim = await observed(billing.leases.claim(req.userId, amount));
    observeBilling(claim ? "held" : "insufficient_quota");
    if (!claim) throw new InsufficientBalanceError();
    const meta: ReserveMeta = {
      priceVer: official.ver,
      planId: plan.id,
      api: req.route.api,
      model: req.model,
      agentId: req.agent.agentId,
      ownerId: req.agent.ownerId,
      tier: req.agent.tier,
      tierBps: Number(tierBps),
    };
    // Every field named (no spread of `official`): an object spread misses V8's inline caches on every request.
    const priced: Priced = {
      ver: official.ver,
      price: official.price,
      chargePrice,
      plan,
      tablePlan,
      tier: req.agent.tier,
      tierBps,
      limits,
      reservedMicros: amount,
      claim,
      meta,
    };
    return new Hold(req, billing, priced, this.log);
  }
}

/** A lease operation, with the ledger's unavailability counted. */
async function observed<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    if (error instanceof LedgerUnavailableError) observeBilling("ledger_unavailable");
    throw error;
  }
}

function worstMicros(req: HoldRequest, inputBytes: number, priced: Pick<Priced, "plan" | "chargePrice" | "limits">): bigint {
  return planChargeMicros(priced.plan, req.route.api, req.model, priced.chargePrice, requestWorst(req, inputBytes, priced.limits));
}

/** The most the request may use: a batch's sum of its requests' worst cases, else its body's (`worstUsage`). */
function requestWorst(req: HoldRequest, inputBytes: number, limits: ModelLimits): Usage {
  return req.batch ? req.batch.worst() : worstUsage(req.route.unit, req.route.multipart, req.fields, inputBytes, limits);
}

/** One request's meter: what it holds, what it used, and its settlement (exactly once). */
export class Hold {
  /** Counts the request's input tokens as it streams, for charges the provider reports no usage for. */
  readonly #inputEstimate: RequestTokenEstimator | null;
  /** Reads the provider's reported usage from the response bytes as they pass (never changes them). */
  #usage: UsageTap | null = null;
  #settled: Charge | null = null;

  constructor(
    private readonly req: HoldRequest,
    private readonly billing: MeterOptions | null,
    private readonly priced: Priced | null,
    private readonly log: Logger,
  ) {
    this.#inputEstimate = priced && !req.route.multipart ? new RequestTokenEstimator() : null;
  }

  /** What the request holds now, µ$ (null when nothing is billed: billing off, or a free route). */
  get heldMicros(): bigint | null {
    return this.priced?.reservedMicros ?? null;
  }

  /**
   * The body grew (or asked for more) past what is held: holds more before the bytes go on. Throws
   * InsufficientBalanceError or LedgerUnavailableError when it cannot.
   */
  async grow(inputBytes: number): Promise<void> {
    const priced = this.priced;
    if (!priced) return;
    if (inputBytes > this.req.inputBytes) this.req.inputBytes = inputBytes;
    const need = worstMicros(this.req, inputBytes, priced);
    if (need <= priced.reservedMicros) return;
    const grown = await observed(this.billing!.leases.grow(priced.claim, need - priced.reservedMicros));
    observeBilling(grown ? "grown" : "insufficient_quota");
    if (!grown) throw new InsufficientBalanceError();
    priced.reservedMicros = need;
  }

  /**
   * The request failed over, before any byte of a response, to another agent: the one hold now settles for that
   * agent (its owner earns, at its tier). The failed attempt is never charged: a request settles once, for the
   * attempt that served it.
   */
  async serveBy(agent: HoldRequest["agent"]): Promise<void> {
    this.req.agent = agent;
    const priced = this.priced;
    if (!priced) return;
    const tierBps = await this.billing!.tariffs.tierBps(agent.tier);
    priced.tier = agent.tier;
    priced.tierBps = tierBps;
    priced.meta = { ...priced.meta, agentId: agent.agentId, ownerId: agent.ownerId, tier: agent.tier, tierBps: Number(tierBps) };
  }

  /** Request body bytes, in order, as they go upstream. */
  input(chunk: Uint8Array): void {
    this.#inputEstimate?.push(chunk);
  }

  /** The provider's response head. */
  response(status: number, contentType: string): void {
    if (status < 400) {
      const checked = this.priced !== null && this.req.route.unit === "tokens";
      this.#usage = createUsageTap(contentType, { countImages: this.req.route.unit === "images", countOutput: checked });
    }
  }

  /** The final usage the provider reported so far, or null. */
  get reported(): Usage | null {
    return this.#usage?.result() ?? null;
  }

  /** Response body bytes, in order, as they go to the client. */
  output(chunk: Uint8Array): void {
    this.#usage?.push(chunk);
  }

  /**
   * Reported token usage against the hub's own count (`usage_check.ts`): within the family's tolerance it is
   * charged as reported, beyond it capped. Routes billed by other units, and multipart bodies, are not checked.
   */
  #check(reported: Usage, limits: ModelLimits): ReturnType<typeof checkUsage> | null {
    const unit = this.req.route.unit;
    if ((unit !== "tokens" && unit !== "input_tokens") || !this.#inputEstimate) return null;
    const estimate = this.#inputEstimate;
    const tap = this.#usage;
    const check = (exact: boolean) =>
      checkUsage({
        model: this.req.model,
        reported,
        hub: {
          inputTokens: exact ? estimate.total() : estimate.lowerBound(),
          unmeasuredInputBytes: estimate.unmeasuredBytes(),
          inputNumbers: estimate.numbers(),
          outputTokens: unit === "input_tokens" ? 0 : ((exact ? tap?.countedOutputTokens() : tap?.countedOutputTokensLowerBound()) ?? null),
          thinkingSeen: tap?.thinkingSeen() ?? false,
        },
        fields: this.req.fields,
        limits,
      });
    // What the tolerance allows grows with the hub's counts: a report within it by lower bounds of the counts
    // (no tokenizer) is within it by the counts themselves. Only a report beyond that is tokenized to decide.
    const quick = check(false);
    return quick.divergence === null ? quick : check(true);
  }

  /**
   * A background response's create call ended before its usage was known (docs/billing.md, "Background
   * responses"): instead of settling, the hold is handed to `write` (which moves it to a reservation of its own,
   * durably) and leaves this gateway's lease. False — nothing handed over, `settle` still to be called — when the
   * request is not billed or `write` failed.
   */
  async handOver(agentId: string, write: (held: DeferredHold) => Promise<void>): Promise<boolean> {
    const priced = this.priced;
    if (!priced || this.#settled) return false;
    const { req } = this;
    // The table's prices and plan, unscaled: the settlement applies the row's share (`price_bps`) itself.
    const plan = priced.tablePlan;
    const own = plan.overrides.get(`${req.route.api}:${req.model}`);
    const worst = requestWorst(req, req.inputBytes, priced.limits);
    const written = write({
      requestId: req.requestId,
      userId: req.userId,
      agentId,
      ownerId: req.agent.ownerId,
      model: req.model,
      leaseId: priced.claim.leaseId,
      reservedMicros: priced.reservedMicros,
      pricing: {
        priceVer: priced.ver,
        planId: plan.id,
        planMultiplierBps: plan.multiplierBps.toString(),
        planOwnPrice: own ? priceToJson(planPrice(plan, req.route.api, req.model, priced.price)) : null,
        official: priceToJson(priced.price),
        tier: priced.tier,
        tierBps: Number(priced.tierBps),
        api: req.route.api,
      },
      worst: { inputTokens: worst.inputTokens, outputTokens: worst.outputTokens },
      ...(req.batch ? { priceBps: req.batch.priceBps } : {}),
    });
    try {
      await written;
    } catch (error) {
      this.log.error("billing.defer_failed", { requestId: req.requestId, error });
      return false;
    }
    if (this.#settled) return true;
    // The lease was charged the whole hold (it now backs the reservation): none of the claim comes back to it.
    this.billing!.leases.finish(priced.claim, priced.reservedMicros, Promise.resolve());
    this.#settled = {
      usage: null,
      estimated: false,
      chargeMicros: null,
      earningMicros: null,
      priceVer: priced.ver,
      tier: priced.tier,
      tierBps: Number(priced.tierBps),
      reported: null,
      written: null,
    };
    return true;
  }

  /**
   * Charges by the rule for how the request ended (docs/billing.md) at the prices it started with — in full,
   * even beyond what it held — and frees the rest of its hold. Once: later calls return the same charge.
   * `record` makes the request's record (its row as JSON) from the charge: it is called only when a settlement is
   * written, and the record goes in the settlement's statement (the caller writes it apart otherwise).
   */
  settle(outcome: Outcome, record?: (charge: Charge) => string): Charge {
    if (this.#settled) return this.#settled;
    const priced = this.priced;
    const tap = this.#usage;
    if (!priced) {
      const reported = tap?.result() ?? null;
      this.#settled = {
        usage: reported,
        estimated: false,
        chargeMicros: null,
        earningMicros: null,
        priceVer: null,
        tier: null,
        tierBps: null,
        reported,
        written: null,
      };
      return this.#settled;
    }
    const { req } = this;
    // Read once: a JSON body's usage is parsed from its tail on each call.
    const reported = tap?.result() ?? null;
    // A batch's create call is never charged (the provider bills its requests, read from their results later).
    const basis: ChargeBasis = req.batch
      ? { usage: { inputTokens: 0, outputTokens: 0, cachedInputTokens: 0 }, estimated: false, rule: "failed" }
      : chargeBasis({
          cause: outcome.cause,
          status: outcome.status,
          responded: outcome.responded,
          dispatched: outcome.dispatched,
          reported,
          reportedInput: tap?.reportedInput() ?? null,
          deliveredOutputTokens: () => tap?.streamedOutputTokens() ?? null,
          estimatedInputTokens: () => this.#inputEstimate?.total() ?? 0,
          inputCharacters: req.route.unit === "speech" ? (req.fields.inputChars ?? 0) : 0,
          responseImages: () => tap?.images() ?? 0,
        });
    const checked = basis.rule === "reported" ? this.#check(basis.usage, priced.limits) : null;
    const usage = checked?.usage ?? basis.usage;
    const estimated = basis.estimated || checked?.divergence != null;
    const official = officialCostMicros(usage, priced.chargePrice);
    const chargeMicros = planChargeMicros(priced.plan, req.route.api, req.model, priced.chargePrice, usage);
    const ownerId = req.agent.ownerId;
    const earningMicros = ownerId === null ? 0n : ownerEarningMicros(official, priced.tierBps);
    const planBps = priced.plan.overrides.has(`${req.route.api}:${req.model}`) ? null : Number(priced.plan.multiplierBps);
    const lease = { leaseId: priced.claim.leaseId, userId: priced.claim.userId, reservedMicros: priced.reservedMicros, meta: priced.meta };
    const billing = this.billing!;
    const charge: Charge = {
      usage,
      estimated,
      chargeMicros,
      earningMicros,
      priceVer: priced.ver,
      tier: priced.tier,
      tierBps: Number(priced.tierBps),
      reported,
      written: null,
    };
    const written = billing.settlements.settle(
      req.userId,
      req.model,
      req.requestId,
      { chargeMicros, ownerId, ownerEarningMicros: earningMicros, officialMicros: official, planBps, usage, estimated, endCause: outcome.cause, lease },
      record ? record(charge) : null,
    );
    written.catch((error: unknown) => this.log.error("billing.settle_failed", { requestId: req.requestId, error }));
    if (checked?.divergence && billing.onUsageCapped) {
      const capped: CappedUsage = {
        requestId: req.requestId,
        userId: req.userId,
        agentId: req.agent.agentId,
        ownerId,
        model: req.model,
        divergence: checked.divergence,
        earningMicros,
        chargeMicros,
      };
      billing.onUsageCapped(capped, written).catch((error: unknown) => this.log.error("billing.usage_capped_unrecorded", { requestId: req.requestId, error }));
    }
    if (ownerId !== null && billing.onServed) {
      const served: ServedRequest = { requestId: req.requestId, userId: req.userId, agentId: req.agent.agentId, ownerId, earningMicros };
      billing.onServed(served, written).catch((error: unknown) => this.log.error("billing.served_check_failed", { requestId: req.requestId, error }));
    }
    billing.leases.finish(priced.claim, chargeMicros, written);
    charge.written = written;
    this.#settled = charge;
    return this.#settled;
  }
}
