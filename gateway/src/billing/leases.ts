/**
 * Credit leases: instead of a database round trip per request to reserve its worst case, a gateway holds a
 * slice of each active user's wallet (one `wellspring_lease` call) and reserves for requests in memory
 * against it. A request still never starts unless its worst case is covered, and never costs more than it
 * held, so a wallet can no more be overspent than with a reservation per request; the requests' records and
 * charges are written when they settle (batched). A lease left idle is given back; a lease whose gateway
 * stopped renewing it is closed by any other gateway's sweep.
 *
 * Bookkeeping, per user: `free` is what the lease holds that no running request has claimed. A request
 * claims its worst case from `free`; when it ends, `free` gets back the worst case less the charge at once
 * (the charge leaves the lease when its settlement is written). `free` never exceeds what the lease holds
 * once every queued settlement is written, so claims never outrun the database.
 */
import { newId } from "@wellspring/db/core";
import type { Logger } from "../log.ts";
import type { Ledger } from "./ledger.ts";

export interface LeaseOptions {
  /** The slice a lease asks for when it is opened or topped up, µ$ (at least the request's own worst case). */
  sliceMicros: bigint;
  /** A lease with no running or unsettled request for this long is given back, ms. */
  idleReleaseMs: number;
  /** How often this gateway renews its leases and sweeps other gateways' abandoned ones, ms. */
  renewIntervalMs: number;
  /** A lease not renewed for this long belongs to a gateway that stopped: any gateway closes it, ms. */
  abandonedAfterMs: number;
}

export const DEFAULT_LEASE_OPTIONS: LeaseOptions = {
  sliceMicros: 1_000_000n, // $1
  idleReleaseMs: 2_000,
  renewIntervalMs: 60_000,
  abandonedAfterMs: 10 * 60_000,
};

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
  idleSince: number;
  /** A top-up in progress: later claims wait for it rather than asking again. */
  topUp: Promise<void> | null;
}

/** What a request holds: pass it back to `finish` exactly once. */
export interface LeaseClaim {
  leaseId: string;
  userId: string;
  amountMicros: bigint;
}

export class CreditLeases {
  readonly #byUser = new Map<string, UserLease>();
  readonly #timer: ReturnType<typeof setInterval>;
  #closed = false;

  constructor(
    private readonly ledger: Ledger,
    private readonly gatewayId: string,
    private readonly log: Logger,
    private readonly options: LeaseOptions = DEFAULT_LEASE_OPTIONS,
  ) {
    const tick = Math.max(50, Math.min(options.idleReleaseMs, 1_000));
    let sinceRenew = 0;
    this.#timer = setInterval(() => {
      this.#releaseIdle();
      sinceRenew += tick;
      if (sinceRenew >= options.renewIntervalMs) {
        sinceRenew = 0;
        void this.#renewAndSweep();
      }
    }, tick);
    this.#timer.unref();
  }

  /** Leases this gateway holds now (for metrics and tests). */
  get active(): number {
    return this.#byUser.size;
  }

  /**
   * Claims `amountMicros` of the user's wallet for one request: from the lease in memory when it has room,
   * else after one top-up. Null when the balance does not cover it.
   */
  async claim(userId: string, amountMicros: bigint): Promise<LeaseClaim | null> {
    if (this.#closed) throw new Error("credit leases are closed");
    if (amountMicros < 0n) throw new RangeError("a claim must not be negative");
    for (;;) {
      let lease = this.#byUser.get(userId);
      if (!lease) {
        lease = { id: newId("lse"), userId, free: 0n, claimed: 0n, open: 0, idleSince: Date.now(), topUp: null };
        this.#byUser.set(userId, lease);
      }
      if (lease.free >= amountMicros) {
        lease.free -= amountMicros;
        lease.claimed += amountMicros;
        lease.open++;
        return { leaseId: lease.id, userId, amountMicros };
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
      const l = lease;
      l.topUp = this.ledger.lease(l.id, userId, this.gatewayId, want, need).then((g) => {
        granted = g;
        l.free += g;
      }).finally(() => {
        l.topUp = null;
      });
      await l.topUp;
      if (granted === 0n) {
        if (l.open === 0 && l.free === 0n && this.#byUser.get(userId) === l) this.#byUser.delete(userId);
        return null;
      }
    }
  }

  /**
   * The request ended and is charged `chargeMicros` (≤ its claim): the rest is free again at once.
   * `written` resolves when its settlement is in the database; only then may the lease be given back.
   */
  finish(claim: LeaseClaim, chargeMicros: bigint, written: Promise<unknown>): void {
    const lease = this.#byUser.get(claim.userId);
    const charged = chargeMicros < claim.amountMicros ? chargeMicros : claim.amountMicros;
    if (lease && lease.id === claim.leaseId) {
      lease.free += claim.amountMicros - charged;
      lease.claimed -= claim.amountMicros;
    }
    const done = () => {
      const l = this.#byUser.get(claim.userId);
      if (l && l.id === claim.leaseId) {
        l.open--;
        if (l.open === 0) l.idleSince = Date.now();
      }
    };
    written.then(done, (error: unknown) => {
      // The settlement could not be written even one by one: the request goes uncharged (its claim returns
      // to the wallet with the lease) rather than holding the user's money until an operator steps in.
      this.log.error("billing.lease_settlement_unwritten", { leaseId: claim.leaseId, userId: claim.userId, amountMicros: claim.amountMicros.toString(), error });
      done();
    });
  }

  #releaseIdle(): void {
    const now = Date.now();
    for (const lease of this.#byUser.values()) {
      if (lease.open === 0 && !lease.topUp && now - lease.idleSince >= this.options.idleReleaseMs) void this.#release(lease);
    }
  }

  #release(lease: UserLease): Promise<void> {
    this.#byUser.delete(lease.userId);
    return this.ledger.releaseLease(lease.id).then(
      () => {},
      (error: unknown) => this.log.warn("billing.lease_release_failed", { leaseId: lease.id, error, note: "the sweep closes it later" }),
    );
  }

  async #renewAndSweep(): Promise<void> {
    try {
      // A lease closed behind this gateway's back (swept while it could not renew) backs nothing any more:
      // forget it, so the next request opens a new one instead of claiming money the wallet no longer holds.
      const closed = new Set(await this.ledger.renewLeases([...this.#byUser.values()].map((l) => l.id)));
      for (const lease of [...this.#byUser.values()]) {
        if (closed.has(lease.id)) {
          this.#byUser.delete(lease.userId);
          this.log.warn("billing.lease_lost", { leaseId: lease.id, note: "closed by a sweep; running requests settle against the balance" });
        }
      }
      const swept = await this.ledger.sweepLeases(this.options.abandonedAfterMs);
      if (swept > 0) this.log.info("billing.leases_swept", { count: swept });
    } catch (error) {
      this.log.warn("billing.lease_renew_failed", { error });
    }
  }

  /**
   * On shutdown, after the settlements are written: gives back every lease. Leases with requests still
   * open stay held (their settlements can still arrive); the sweep closes them.
   */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#timer);
    await Promise.all([...this.#byUser.values()].filter((l) => l.open === 0).map((l) => this.#release(l)));
  }
}
