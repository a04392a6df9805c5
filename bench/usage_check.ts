/**
 * `npm run bench:usage-check`: what checking reported usage costs at settlement, per request, for a small chat
 * completion (a ~300-byte request, a ~530-byte JSON response, an honest report) and a longer one (~4 KB of
 * output). Before: both texts tokenized (o200k) on every billed request. After (the meter's path): lower bounds
 * of the counts first (`tokenLowerBound`, one pass, no tokenizer); the tokenizer runs only when the report is not
 * within the tolerance by those bounds. Measured as process CPU time over BENCH_CHECKS settlements of each path;
 * the request estimate and the response tap are fed the bytes beforehand (the gateway does that as they pass).
 */
import { emptyFields } from "@wellspring/protocol";
import { checkUsage } from "../gateway/src/billing/usage_check.ts";
import { RequestTokenEstimator } from "../gateway/src/billing/estimate.ts";
import { createUsageTap } from "../gateway/src/billing/usage_tap.ts";

const CHECKS = Number(process.env.BENCH_CHECKS ?? 20_000);
/** Settlements fed and measured at a time. */
const BATCH = 1_000;
const enc = new TextEncoder();
const limits = { contextTokens: 128_000, outputTokensMax: 16_384, known: true };
const fields = { ...emptyFields(), model: "gpt-4o-mini" };

function scenario(outputText: string, reported: { inputTokens: number; outputTokens: number }) {
  const request = enc.encode(
    JSON.stringify({
      model: "gpt-4o-mini",
      messages: [
        { role: "system", content: "You are a helpful assistant that answers briefly." },
        { role: "user", content: "Write two sentences about why the sky looks blue in the afternoon." },
      ],
    }),
  );
  const response = enc.encode(
    JSON.stringify({
      id: "chatcmpl-0123456789abcdef",
      object: "chat.completion",
      created: 1764600000,
      model: "gpt-4o-mini-2024-07-18",
      choices: [{ index: 0, message: { role: "assistant", content: outputText, refusal: null }, finish_reason: "stop" }],
      usage: { prompt_tokens: reported.inputTokens, completion_tokens: reported.outputTokens, total_tokens: reported.inputTokens + reported.outputTokens },
    }),
  );
  return { request, response, reported: { ...reported, cachedInputTokens: 0 } };
}

type Scenario = ReturnType<typeof scenario>;

/** The request estimate and response tap as the gateway holds them when the request settles. */
function fed(s: Scenario) {
  const estimate = new RequestTokenEstimator();
  estimate.push(s.request);
  const tap = createUsageTap("application/json", { countOutput: true });
  tap.push(s.response);
  return { estimate, tap };
}

function run(s: Scenario, { estimate, tap }: ReturnType<typeof fed>, fast: boolean): boolean {
  const check = (exact: boolean) =>
    checkUsage({
      model: "gpt-4o-mini",
      reported: s.reported,
      hub: {
        inputTokens: exact ? estimate.total() : estimate.lowerBound(),
        unmeasuredInputBytes: estimate.unmeasuredBytes(),
        inputNumbers: estimate.numbers(),
        outputTokens: exact ? tap.countedOutputTokens() : tap.countedOutputTokensLowerBound(),
        thinkingSeen: false,
      },
      fields,
      limits,
    });
  if (!fast) return check(true).divergence === null;
  const quick = check(false);
  return quick.divergence === null ? true : check(true).divergence === null;
}

function cpuUs(s: Scenario, fast: boolean): { usPerCheck: number; tokenizerSkipped: boolean } {
  for (let i = 0; i < 2_000; i++) run(s, fed(s), fast); // warm-up (the JIT)
  // Fed outside the measured loop (reading the bytes happens as they pass, before settlement, on both paths), in
  // batches so the fed states do not fill the heap.
  let usedUs = 0;
  for (let done = 0; done < CHECKS; done += BATCH) {
    const states = Array.from({ length: Math.min(BATCH, CHECKS - done) }, () => fed(s));
    const before = process.cpuUsage();
    for (const state of states) run(s, state, fast);
    const used = process.cpuUsage(before);
    usedUs += used.user + used.system;
  }
  const { estimate, tap } = fed(s);
  const quick = checkUsage({
    model: "gpt-4o-mini",
    reported: s.reported,
    hub: {
      inputTokens: estimate.lowerBound(),
      unmeasuredInputBytes: 0,
      inputNumbers: estimate.numbers(),
      outputTokens: tap.countedOutputTokensLowerBound(),
      thinkingSeen: false,
    },
    fields,
    limits,
  });
  return { usPerCheck: +(usedUs / CHECKS).toFixed(2), tokenizerSkipped: fast && quick.divergence === null };
}

const small = scenario(
  "The sky looks blue because air molecules scatter short blue wavelengths of sunlight far more than red ones. In the afternoon the sun is high, so that scattered blue light reaches you from every direction.",
  { inputTokens: 40, outputTokens: 42 },
);
const long = scenario(
  "Sunlight contains every visible colour, and as it crosses the atmosphere it meets nitrogen and oxygen molecules far smaller than its wavelengths. ".repeat(
    28,
  ),
  { inputTokens: 40, outputTokens: 700 },
);
const results = [];
for (const [name, s] of [
  ["small chat completion (~530 B response)", small],
  ["long chat completion (~4 KB response)", long],
] as const) {
  for (const fast of [false, true]) results.push({ what: name, path: fast ? "after: lower bounds first" : "before: tokenize both", ...cpuUs(s, fast) });
}
console.table(results);
