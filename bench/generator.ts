/**
 * The load generator, in a worker thread of its own: the mock provider runs on the benchmark's main thread,
 * so a busy client (10,000 aborts, 1,000 streams, 50 MB buffers) never delays what the provider observes —
 * or the other way round. The main thread calls the functions below by name (`Generator.call`).
 */
import { parentPort, Worker } from "node:worker_threads";
import { load, measure } from "./lib.ts";
import { soakLoad, sseLoad } from "./sse.ts";
import { bulkClients } from "./bulk.ts";
import { abortMany } from "./cancel.ts";

const FUNCTIONS = { measure, load, sseLoad, soakLoad, bulkClients, abortMany };
type Fns = typeof FUNCTIONS;

if (parentPort) {
  const port = parentPort;
  port.on("message", (m: { id: number; fn: keyof Fns; args: unknown[] }) => {
    const f = FUNCTIONS[m.fn] as (...a: unknown[]) => Promise<unknown>;
    f(...m.args).then(
      (result) => port.postMessage({ id: m.id, result }),
      (error: unknown) => port.postMessage({ id: m.id, error: String((error as Error)?.stack ?? error) }),
    );
  });
}

export class Generator {
  readonly #worker: Worker;
  #next = 0;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();

  constructor() {
    // tsx's loader is registered inside the worker, then this module is loaded there.
    const url = import.meta.url;
    this.#worker = new Worker(`import("tsx/esm/api").then((m) => { m.register(); return import(${JSON.stringify(url)}); });`, { eval: true });
    this.#worker.on("message", (m: { id: number; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (m.error !== undefined) p?.reject(new Error(`load generator: ${m.error}`));
      else p?.resolve(m.result);
    });
    this.#worker.on("error", (e) => {
      for (const p of this.#pending.values()) p.reject(e);
      this.#pending.clear();
    });
  }

  call<K extends keyof Fns>(fn: K, ...args: Parameters<Fns[K]>): ReturnType<Fns[K]> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, fn, args });
    }) as ReturnType<Fns[K]>;
  }

  async close(): Promise<void> {
    await this.#worker.terminate();
  }
}
