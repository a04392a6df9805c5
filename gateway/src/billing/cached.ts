/**
 * A value loaded from the database and reused. After `invalidate()` (it changed: the hub's event channel said
 * so) the next caller waits for a fresh load. When it is merely older than `ttlMs` (the safety net for a
 * missed event), callers get it at once while one reload runs behind them — so no request on the hot path
 * ever waits for a routine refresh.
 */
export class Cached<T> {
  #value: { at: number; value: T } | null = null;
  #loading: Promise<void> | null = null;
  /** Bumped by `invalidate()`, so a load that started before it cannot store a value it may not reflect. */
  #epoch = 0;

  constructor(
    private readonly load: () => Promise<T>,
    private readonly ttlMs: number,
  ) {}

  /** Forget the value (it changed); the next `get` loads it again. */
  invalidate(): void {
    this.#value = null;
    this.#epoch++;
  }

  #reload(): Promise<void> {
    const epoch = this.#epoch;
    this.#loading ??= this.load()
      .then((value) => {
        if (epoch === this.#epoch) this.#value = { at: Date.now(), value };
      })
      .finally(() => (this.#loading = null));
    return this.#loading;
  }

  async get(): Promise<T> {
    for (;;) {
      const v = this.#value;
      if (v) {
        if (Date.now() - v.at > this.ttlMs) this.#reload().catch(() => {}); // served stale meanwhile; a failed reload retries next time
        return v.value;
      }
      await this.#reload();
    }
  }
}
