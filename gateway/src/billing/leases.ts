/**
 * Credit leases: instead of a database round trip per request to reserve its worst case, a gateway holds a
 * slice of each active user's wallet (one `wellspring_lease` call) and reserves for requests in memory
 * against it. A request never starts unless its worst case is covered, so a wallet can no more be overspent
 * than with a reservation per request; the requests' records and charges are written when they settle
 * (batched). A lease left idle is given back.
 *
 * Liveness: every `renewIntervalMs` the gateway reports itself alive and renews its leases in one statement
 * (`Ledger.heartbeat`), with the number of requests claimed against each (the audit checks each one settled).
 * A gateway that stops reporting for `gatewayDeadAfterMs` is dead: any other gateway releases its leases. A
 * gateway that cannot report stops claiming from its leases after `validForMs` (< `gatewayDeadAfterMs`), so a
 * lease is never used by a gateway after another has released it; and it asks for no new credit while the
 * ledger is unreachable. What it can lose to an outage is bounded by what its leases held.
 *
 * Bookkeeping, per user: `free` is what the lease holds that no running request has claimed. A request
 * claims its worst case from `free`; when it ends, `free` gets back the worst case less the part of the charge
 * within it at once (the charge leaves the lease when its settlement is written). A charge beyond the claim
 * comes from the wallet's available balance, not the lease.
 */
import { newId } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import { LedgerUnavailableError, type LedgerHealth } from "./health.ts";
import type { Ledger } from "./ledger.ts";

export interface LeaseOptions {
  /** The slice a lease asks for when it is opened or topped up, µ$ (at least the request's own worst case). */
  sliceMicros: bigint;
  /** A lease with no running or unsettled request for this long is given back, ms. */
  idleReleaseMs: number;
  /** How often this gateway reports itself alive and renews its leases, ms. */
  renewIntervalMs: number;
  /** Leases not renewed for this long are not claimed from (the ledger may have released them), ms. */
  validForMs: number;
  /** A gateway silent for this long is dead: any other gateway releases its leases, ms. */
  gatewayDeadAfterMs: number;
}

export const DEFAULT_LEASE_OPTIONS: LeaseOptions = {
  sliceMicros: 1_000_000n, // $1
  idleReleaseMs: 2_000,
  renewIntervalMs: 5_000,
  validForMs: 15_000,
  gatewayDeadAfterMs: 30_000,
};

/** While the ledger is unreachable, how often the heartbeat tries again (it doubles as the probe), ms. */
export const LEDGER_RETRY_INTERVAL_MS = 1_000;

/** Checks that lease timings keep a lease from being used after another gateway may have released it. */
export function leaseOptionsProblem(o: LeaseOptions): string | null {
  if (o.renewIntervalMs <= 0) return "the lease renew interval must be positive";
  if (o.validForMs <= o.renewIntervalMs) return "leases must stay valid longer than the renew interval";
  if (o.gatewayDeadAfterMs <= o.validForMs) return "a gateway must be declared dead only after its leases stopped being valid";
  return null;
}

const max = (...xs: bigint[]) => xs.reduce((a, b) => (a > b ? a : b));

/** Each worst case claimed is at most this many times smaller than the slice asked for. */
const SLICE_PER_REQUEST_MIN = 16n;

interface UserLease {
  id: string;
  userId: string;
  free: bigint;
  /** What the running requests have claimed (their worst cases), µ$. */
  claimed: bigint;
  /** Requests claimed and not yet written (running, or settled in memory with the write queued). */
  open: number;
  /** Requests ever claimed against this lease (reported to the ledger at each renewal and at release). */
  requestsClaimed: number;
  idleSince: number;
  /** A top-up in progress: later claims wait for it rather than asking again. */
  topUp: Promise<void> | null;
  /** The ledger has granted this lease at least once (before that, it has no row to renew). */
  granted: boolean;
}

/** What a request holds: pass it back to `finish` exactly once. `amountMicros` grows with `grow`. */
export interface LeaseClaim {
  leaseId: string;
  userId: string;
  amountMicros: bigint;
}

export class CreditLeases {
  readonly #byUser = new Map<string, UserLease>();
  readonly #timer: ReturnType<typeof setInterval>;
  #closed = false;
  /** When the ledger last confirmed this gateway's leases (epoch ms). */
  #renewedAt: number;
  #lastAttemptAt = 0;
  #beating: Promise<void> | null = null;
  /** Leases given back whose release the ledger has not confirmed yet (retried with each heartbeat): id → requests claimed. */
  readonly #unreleased = new Map<string, number>();
  /** Releases under way (awaited on close). */
  readonly #releasing = new Set<Promise<void>>();

  constructor(
    private readonly ledger: Ledger,
    private readonly gatewayId: string,
    private readonly hubId: string,
    private readonly health: LedgerHealth,
    private readonly log: Logger,
    private readonly options: LeaseOptions = DEFAULT_LEASE_OPTIONS,
    private readonly now: () => number = Date.now,
  ) {
    const problem = leaseOptionsProblem(options);
    if (problem) throw new RangeError(`Cannot start credit leases: ${problem}`);
    this.#renewedAt = now();
    const tick = Math.max(50, Math.min(options.idleReleaseMs, LEDGER_RETRY_INTERVAL_MS));
    this.#timer = setInterval(() => {
      this.#releaseIdle();
      const since = this.now() - this.#lastAttemptAt;
      if (since >= options.renewIntervalMs || (!this.health.up && since >= LEDGER_RETRY_INTERVAL_MS)) void this.heartbeat();
    }, tick);
    this.#timer.unref();
  }

  /** Leases this gateway holds now (for metrics and tests). */
  get active(): number {
    return this.#byUser.size;
  }

  /**
   * Reports this gateway alive, renews its leases (forgetting any the ledger closed meanwhile) and releases the
   * leases of dead gateways. Runs on a timer; call it once at start so the gateway is known before it serves.
   */
  heartbeat(): Promise<void> {
    this.#beating ??= this.#beat().finally(() => {
      this.#beating = null;
    });
    return this.#beating;
  }

  async #beat(): Promise<void> {
    this.#lastAttemptAt = this.now();
    const startedAt = this.now();
    // Only leases the ledger has granted have a row to renew; one whose first grant is under way does not yet.
    const leases = [...this.#byUser.values()].filter((l) => l.granted);
    try {
      const closed = new Set(
        await this.ledger.heartbeat(
          this.gatewayId,
          this.hubId,
          leases.map((l) => ({ id: l.id, requestsClaimed: l.requestsClaimed })),
        ),
      );
      this.#renewedAt = startedAt;
      this.health.ok();
      for (const lease of leases) {
        if (closed.has(lease.id) && this.#byUser.get(lease.userId) === lease) {
          // Released behind this gateway's back (swept while it could not report): it backs nothing any more.
          this.#byUser.delete(lease.userId);
          this.log.warn("billing.lease_lost", { leaseId: lease.id, note: "released by the ledger; running requests settle against the balance" });
        }
      }
      for (const [id, claimed] of [...this.#unreleased]) {
        await this.ledger.releaseLease(id, claimed);
        this.#unreleased.delete(id);
      }
      const swept = await this.ledger.sweepDeadGateways(this.gatewayId, this.options.gatewayDeadAfterMs);
      if (swept > 0) this.log.info("billing.leases_swept", { count: swept, note: "leases of dead gateways released" });
    } catch (error) {
      this.health.failed(error);
      this.log.warn("billing.heartbeat_failed", { error });
    }
  }

  /** The ledger confirmed this gateway's leases recently enough that they may still be claimed from. */
  get valid(): boolean {
    return this.now() - this.#renewedAt < this.options.validForMs;
  }

  /**
   * Claims `amountMicros` of the user's wallet for one request: from the lease in memory when it has room,
   * else after one top-up. Null when the balance does not cover it; throws LedgerUnavailableError when the
   * ledger cannot be reached (or has not confirmed this gateway's leases for too long).
   */
  async claim(userId: string, amountMicros: bigint): Promise<LeaseClaim | null> {
    if (this.#closed) throw new Error("credit leases are closed");
    if (amountMicros < 0n) throw new RangeError("a claim must not be negative");
    const lease = await this.#take(userId, amountMicros, null);
    if (!lease) return null;
    lease.open++;
    lease.requestsClaimed++;
    return { leaseId: lease.id, userId, amountMicros };
  }

  /**
   * Adds `extraMicros` to a running request's claim (its body turned out larger, or asked for more, than first
   * thought): from the same lease, topped up if needed. False when the balance does not cover it.
   */
  async grow(claim: LeaseClaim, extraMicros: bigint): Promise<boolean> {
    if (extraMicros <= 0n) return true;
    const lease = await this.#take(claim.userId, extraMicros, claim.leaseId);
    if (!lease) return false;
    claim.amountMicros += extraMicros;
    return true;
  }

  async #take(userId: string, amountMicros: bigint, leaseId: string | null): Promise<UserLease | null> {
    for (;;) {
      if (!this.valid) throw new LedgerUnavailableError("the ledger has not confirmed this gateway's credit recently");
      let lease = this.#byUser.get(userId);
      if (leaseId !== null && lease?.id !== leaseId) return null; // the request's lease is gone: it cannot grow
      if (!lease) {
        lease = { id: newId("lse"), userId, free: 0n, claimed: 0n, open: 0, requestsClaimed: 0, idleSince: this.now(), topUp: null, granted: false };
        this.#byUser.set(userId, lease);
      }
      if (lease.free >= amountMicros) {
        lease.free -= amountMicros;
        lease.claimed += amountMicros;
        return lease;
      }
      if (lease.topUp) {
        await lease.topUp;
        continue;
      }
      const need = amountMicros - lease.free;
      // The slice grows with the load: at least what the running requests hold, so a burst of N concurrent
      // requests on one wallet needs about log2(N) top-ups, not N / slice.
      const want = max(this.options.sliceMicros, amountMicros * SLICE_PER_REQUEST_MIN, lease.claimed, need);
      let granted = 0n;
      let failure: unknown = null;
      const l = lease;
      l.topUp = this.ledger
        .lease(l.id, userId, this.gatewayId, want, need)
        .then(
          (g) => {
            granted = g;
            l.free += g;
            if (g > 0n) l.granted = true;
            this.health.ok();
          },
          (error: unknown) => {
            failure = error;
            this.health.failed(error);
          },
        )
        .finally(() => {
          l.topUp = null;
        });
      await l.topUp;
      if (failure !== null || granted === 0n) {
        if (l.open === 0 && l.free === 0n && this.#byUser.get(userId) === l) this.#byUser.delete(userId);
        if (failure !== null) throw new LedgerUnavailableError("the ledger cannot be reached to grant credit", { cause: failure });
        return null;
      }
    }
  }

  /**
   * The request ended and is charged `chargeMicros` (it may exceed its claim: the excess comes from the
   * available balance). The unused part of the claim is free again at once. `written` resolves when its
   * settlement is in the database or the spool; only then may the lease be given back.
   */
  finish(claim: LeaseClaim, chargeMicros: bigint, written: Promise<unknown>): void {
    const lease = this.#byUser.get(claim.userId);
    const withinClaim = chargeMicros < claim.amountMicros ? chargeMicros : claim.amountMicros;
    if (lease && lease.id === claim.leaseId) {
      lease.free += claim.amountMicros - withinClaim;
      lease.claimed -= claim.amountMicros;
    }
    const done = () => {
      const l = this.#byUser.get(claim.userId);
      if (l && l.id === claim.leaseId) {
        l.open--;
        if (l.open === 0) l.idleSince = this.now();
      }
    };
    written.then(done, (error: unknown) => {
      // Neither the database nor the spool took it: the lease is released with the claim counted, so the
      // audit reports the missing settlement instead of the money staying held.
      this.log.error("billing.lease_settlement_unwritten", {
        leaseId: claim.leaseId,
        userId: claim.userId,
        amountMicros: claim.amountMicros.toString(),
        error,
      });
      done();
    });
  }

  #releaseIdle(): void {
    const now = this.now();
    for (const lease of this.#byUser.values()) {
      if (lease.open === 0 && !lease.topUp && now - lease.idleSince >= this.options.idleReleaseMs) {
        if (lease.granted) void this.#release(lease);
        else this.#byUser.delete(lease.userId); // never granted: nothing to give back
      }
    }
  }

  #release(lease: UserLease): Promise<void> {
    this.#byUser.delete(lease.userId);
    const done: Promise<void> = this.ledger
      .releaseLease(lease.id, lease.requestsClaimed)
      .then(
        () => this.health.ok(),
        (error: unknown) => {
          this.health.failed(error);
          this.#unreleased.set(lease.id, lease.requestsClaimed);
          this.log.warn("billing.lease_release_failed", { leaseId: lease.id, error, note: "retried with the next heartbeat" });
        },
      )
      .finally(() => this.#releasing.delete(done));
    this.#releasing.add(done);
    return done;
  }

  /** Leases given back whose release is still to be confirmed by the ledger (for readiness and tests). */
  get unreleased(): number {
    return this.#unreleased.size;
  }

  /**
   * On shutdown, after the settlements are written: gives back every lease and says this gateway stopped.
   * Leases with requests still open stay held until another gateway sees it stopped and releases them.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#beating;
    await Promise.all([...this.#byUser.values()].filter((l) => l.open === 0 && l.granted).map((l) => this.#release(l)));
    await Promise.all([...this.#releasing]);
    for (const [id, claimed] of [...this.#unreleased])
      await this.ledger.releaseLease(id, claimed).then(
        () => this.#unreleased.delete(id),
        () => {},
      );
    await this.ledger.gatewayStopped(this.gatewayId).catch((error: unknown) => this.log.warn("billing.gateway_stop_unrecorded", { error }));
  }
}
