/**
 * The context window of each model the agent serves, so the hub sends a request only to an agent that can hold
 * it. Learned two ways and kept in `state/context-windows.json`:
 * - from the provider's model metadata (`GET /v1/models`: a `context_window`, `context_length` or
 *   `max_input_tokens` field, where the provider gives one), read once at start;
 * - from the provider's own context-length error (OpenAI: "maximum context length is N tokens"; Anthropic:
 *   "prompt is too long: X tokens > N maximum"), read from the first ERROR_BODY_BYTES_MAX bytes of a 400.
 * A change is reported to the hub in a new INVENTORY.
 */
import { join } from "node:path";
import type { Inventory } from "../../protocol/src/mod.ts";
import type { Log } from "./log.ts";
import { authHeaders, officialOrigin, type Upstream } from "./providers.ts";

/** Bytes of a 400 body read for a context-length error. */
export const ERROR_BODY_BYTES_MAX = 8 * 1024;
/** Longest wait for a provider's model list at start, ms. */
export const METADATA_TIMEOUT_MS = 5_000;
/** Windows outside this range are ignored as misread, tokens. */
const WINDOW_TOKENS_MIN = 256;
const WINDOW_TOKENS_MAX = 100_000_000;

const OPENAI_CONTEXT = /maximum context length is (\d+) tokens/;
const ANTHROPIC_CONTEXT = /prompt is too long: \d+ tokens > (\d+) maximum/;

/** The window a provider's context-length error names, or null. */
export function windowFromError(text: string): number | null {
  const m = OPENAI_CONTEXT.exec(text) ?? ANTHROPIC_CONTEXT.exec(text);
  return m ? plausible(Number(m[1])) : null;
}

/** Windows a provider's model list names, by model id. */
export function windowsFromMetadata(body: unknown): Map<string, number> {
  const out = new Map<string, number>();
  const data = (body as { data?: unknown } | null)?.data;
  if (!Array.isArray(data)) return out;
  for (const entry of data as Record<string, unknown>[]) {
    if (typeof entry?.id !== "string") continue;
    const raw = entry.context_window ?? entry.context_length ?? entry.max_input_tokens;
    const tokens = typeof raw === "number" ? plausible(raw) : null;
    if (tokens !== null) out.set(entry.id, tokens);
  }
  return out;
}

function plausible(n: number): number | null {
  return Number.isSafeInteger(n) && n >= WINDOW_TOKENS_MIN && n <= WINDOW_TOKENS_MAX ? n : null;
}

export class ContextWindows {
  /** `provider:model` → tokens. */
  readonly #windows = new Map<string, number>();
  readonly #file: string;
  #onChange: (() => void) | null = null;

  constructor(
    stateDir: string,
    private readonly log: Log,
  ) {
    this.#file = join(stateDir, "context-windows.json");
  }

  /** Called after a window was learned (the tunnel sends a new INVENTORY). */
  onChange(listener: () => void): void {
    this.#onChange = listener;
  }

  async load(): Promise<void> {
    try {
      const saved = JSON.parse(await Deno.readTextFile(this.#file)) as Record<string, unknown>;
      for (const [k, v] of Object.entries(saved)) {
        const tokens = typeof v === "number" ? plausible(v) : null;
        if (tokens !== null) this.#windows.set(k, tokens);
      }
    } catch {
      /* none learned yet, or unreadable: learned again */
    }
  }

  /** Asks each upstream's model list for windows (bounded by METADATA_TIMEOUT_MS; a failure is only logged). */
  async learnFromMetadata(upstreams: Upstream[], devOrigin: string | null): Promise<void> {
    for (const u of upstreams) {
      if (u.provider === "azure") continue; // Azure's deployments list has no window.
      try {
        const res = await fetch(`${devOrigin ?? officialOrigin(u)}/v1/models`, {
          headers: authHeaders(u),
          signal: AbortSignal.timeout(METADATA_TIMEOUT_MS),
        });
        if (!res.ok) {
          await res.body?.cancel();
          continue;
        }
        for (const [model, tokens] of windowsFromMetadata(await res.json())) {
          if (u.models.includes(model)) this.#set(u.provider, model, tokens, "metadata");
        }
      } catch (error) {
        this.log.warn("agent.context_metadata_failed", { provider: u.provider, error: (error as Error).name });
      }
    }
  }

  /** A provider's 400 body (its first bytes): a context-length error teaches the model's window. */
  learnFromError(provider: string, model: string, body: string): void {
    const tokens = windowFromError(body);
    if (tokens !== null) this.#set(provider, model, tokens, "error");
  }

  /** The inventory with the windows known now. */
  apply(inventory: Inventory): Inventory {
    return { ...inventory, models: inventory.models.map((m) => ({ ...m, contextTokens: this.#windows.get(`${m.provider}:${m.model}`) ?? null })) };
  }

  #set(provider: string, model: string, tokens: number, source: "metadata" | "error"): void {
    const k = `${provider}:${model}`;
    if (this.#windows.get(k) === tokens) return;
    this.#windows.set(k, tokens);
    this.log.info("agent.context_window", { provider, model, tokens, source });
    Deno.writeTextFile(this.#file, JSON.stringify(Object.fromEntries(this.#windows))).catch((error: unknown) =>
      this.log.warn("agent.context_window_save_failed", { error: (error as Error).name }),
    );
    this.#onChange?.();
  }
}
