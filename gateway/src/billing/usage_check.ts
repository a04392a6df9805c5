/**
 * Usage the hub can check. The hub sees every byte it forwards, so it counts a request's input and the output it
 * delivered itself (o200k_base, `estimate.ts`) and compares them with the usage the agent reports. A charge never
 * exceeds the hub's own count by more than the tolerance of the model's family (docs/billing.md, "Usage the hub
 * can check"): reported usage within it is charged exactly; beyond it, each side is capped to the tolerance and the
 * request is reported as a divergence (counts only), which the composition root turns into a risk flag and an
 * earnings hold.
 *
 * The tolerance must never cap an honest provider, so every count here leans high (keys and ids count as text)
 * and every allowance covers what the hub cannot see:
 * - input: the providers' tokenizers differ from o200k (ratio), the per-message and tool-definition overhead
 *   (slack), inline images and audio the hub does not tokenize (their bytes, plus `IMAGE_PART_TOKENS_MAX` per
 *   image part), token-id arrays (one token per number); cached input is part of input and is capped with it; a
 *   body that points at content the hub cannot see (an earlier response, a file, a remote image) has no input
 *   check (its hold already allows a whole context window);
 * - output: the delivered text (content, refusals, tool-call arguments, visible reasoning) × ratio + slack, plus
 *   hidden reasoning up to the request's own output cap — only for models that reason unseen (OpenAI o-series and
 *   GPT-5, reported as `reasoning_tokens`; Claude with a thinking block in the response, whose summary is shorter
 *   than the thinking billed).
 */
import type { BodyFields } from "@wellspring/protocol";
import type { Usage } from "./usage.ts";
import { IMAGE_PART_TOKENS_MAX, type ModelLimits } from "./worst_case.ts";

export type ModelFamily = "openai_o200k" | "openai_cl100k" | "anthropic" | "other";

export interface UsageTolerance {
  family: ModelFamily;
  /** Reported ÷ counted allowed before capping, basis points (10,000 = the hub's count exactly). */
  ratioBps: number;
  /** Input tokens allowed beyond ratio × count: message and tool-definition overhead. */
  inputSlackTokens: number;
  /** Output tokens allowed beyond ratio × count: stop and formatting tokens. */
  outputSlackTokens: number;
  /** The family bills reasoning it does not deliver (allowed up to the request's output cap). */
  hiddenReasoning: "reported" | "thinking_block" | "none";
}

const O200K = ["gpt-5", "gpt-4.1", "gpt-4o", "chatgpt-4o", "o1", "o3", "o4", "gpt-image-1", "codex-"];
const REASONING = ["gpt-5", "o1", "o3", "o4", "codex-"];
const CL100K = ["gpt-4", "gpt-3.5", "text-embedding-"];

const matches = (model: string, prefixes: readonly string[]) =>
  prefixes.some((p) => model === p || model.startsWith(p.endsWith("-") ? p : `${p}-`) || model.startsWith(`${p}.`));

/** The documented tolerance for a model (docs/billing.md has the same table). */
export function usageTolerance(model: string): UsageTolerance {
  if (matches(model, O200K)) {
    return {
      family: "openai_o200k",
      ratioBps: 12_500,
      inputSlackTokens: 128,
      outputSlackTokens: 32,
      hiddenReasoning: matches(model, REASONING) ? "reported" : "none",
    };
  }
  if (matches(model, CL100K)) return { family: "openai_cl100k", ratioBps: 15_000, inputSlackTokens: 128, outputSlackTokens: 32, hiddenReasoning: "none" };
  if (model.startsWith("claude-"))
    return { family: "anthropic", ratioBps: 20_000, inputSlackTokens: 1_024, outputSlackTokens: 64, hiddenReasoning: "thinking_block" };
  return { family: "other", ratioBps: 20_000, inputSlackTokens: 1_024, outputSlackTokens: 64, hiddenReasoning: "reported" };
}

/** What the hub counted of one request, by its own tokenizer. */
export interface HubCount {
  /** Tokens of the request body's text; null when the hub did not count it (multipart). */
  inputTokens: number | null;
  /** Bytes of the body the hub does not tokenize: data URLs and base64 runs (images, audio). */
  unmeasuredInputBytes: number;
  /** Numbers in the body outside strings (token-id arrays: one token each). */
  inputNumbers: number;
  /** Tokens of the output delivered to the client; null when the hub did not count it. */
  outputTokens: number | null;
  /** The response carried a thinking block (Claude's delivered thinking is a summary of what is billed). */
  thinkingSeen: boolean;
}

export interface UsageCheckInput {
  model: string;
  reported: Usage;
  hub: HubCount;
  fields: BodyFields;
  limits: ModelLimits;
}

/** A reported usage beyond the tolerance: every figure the evidence keeps (counts, never content). */
export interface UsageDivergence {
  family: ModelFamily;
  reported: { inputTokens: number; outputTokens: number; cachedInputTokens: number; reasoningTokens: number };
  counted: { inputTokens: number | null; outputTokens: number | null; unmeasuredInputBytes: number };
  allowed: { inputTokens: number | null; outputTokens: number | null };
  charged: { inputTokens: number; outputTokens: number; cachedInputTokens: number };
}

export interface UsageCheck {
  /** What may be charged: the reported usage, capped to what the hub allows. */
  usage: Usage;
  /** Set when the report went beyond the tolerance (and `usage` is capped). */
  divergence: UsageDivergence | null;
}

const scaled = (tokens: number, bps: number) => Math.ceil((tokens * bps) / 10_000);

/** Compares reported usage with the hub's count; caps what exceeds the family's tolerance. */
export function checkUsage(c: UsageCheckInput): UsageCheck {
  const t = usageTolerance(c.model);
  const { reported, hub, fields } = c;
  const reasoningTokens = reported.reasoningTokens ?? 0;
  const inputAllowed =
    hub.inputTokens === null || fields.references
      ? null
      : scaled(hub.inputTokens, t.ratioBps) + t.inputSlackTokens + hub.unmeasuredInputBytes + hub.inputNumbers + fields.imageParts * IMAGE_PART_TOKENS_MAX;
  let outputAllowed: number | null = null;
  if (hub.outputTokens !== null) {
    const results = Math.max(fields.n ?? 1, fields.bestOf ?? 1, 1);
    const outputCap = (fields.maxOutputTokens ?? c.limits.outputTokensMax) * results;
    const hidden =
      t.hiddenReasoning === "reported" ? Math.min(reasoningTokens, outputCap) : t.hiddenReasoning === "thinking_block" && hub.thinkingSeen ? outputCap : 0;
    outputAllowed = scaled(hub.outputTokens, t.ratioBps) + t.outputSlackTokens + hidden;
  }
  const inputTokens = inputAllowed === null ? reported.inputTokens : Math.min(reported.inputTokens, inputAllowed);
  const outputTokens = outputAllowed === null ? reported.outputTokens : Math.min(reported.outputTokens, outputAllowed);
  if (inputTokens === reported.inputTokens && outputTokens === reported.outputTokens) return { usage: reported, divergence: null };
  const cachedInputTokens = Math.min(reported.cachedInputTokens, inputTokens);
  const usage: Usage = { ...reported, inputTokens, outputTokens, cachedInputTokens };
  return {
    usage,
    divergence: {
      family: t.family,
      reported: { inputTokens: reported.inputTokens, outputTokens: reported.outputTokens, cachedInputTokens: reported.cachedInputTokens, reasoningTokens },
      counted: { inputTokens: hub.inputTokens, outputTokens: hub.outputTokens, unmeasuredInputBytes: hub.unmeasuredInputBytes },
      allowed: { inputTokens: inputAllowed, outputTokens: outputAllowed },
      charged: { inputTokens, outputTokens, cachedInputTokens },
    },
  };
}
