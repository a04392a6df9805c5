/** A value loaded from the database, reused for `ttlMs`, reloaded once however many callers wait for it. */
export class Cached<T> {
  #value: { at: number; value: T } | null = null;
  #loading: Promise<void> | null = null;

  constructor(private readonly load: () => Promise<T>, private readonly ttlMs: number) {}

  /** Forget the value (it changed); the next `get` loads it again. */
  invalidate(): void {
    this.#value = null;
  }

  async get(): Promise<T> {
    for (;;) {
      const v = this.#value;
      if (v && Date.now() - v.at <= this.ttlMs) return v.value;
      this.#loading ??= this.load()
        .then((value) => {
          this.#value = { at: Date.now(), value };
        })
        .finally(() => (this.#loading = null));
      await this.#loading;
    }
  }
}
