/**
 * Content compliance at the hub: admin-managed prohibited terms (`content_rules`) matched on the text of a request
 * body as it streams, before each chunk is forwarded — so a refused body never reaches a provider whole, whatever
 * its size or chunking. A multi-pattern matcher (Aho–Corasick) over normalised code points: NFKC (full-width
 * and compatibility forms fold to their plain form), lower case, zero-width and soft-hyphen characters dropped; works
 * the same for Chinese and English. Only JSON string contents are read (keys included); a match never spans two
 * strings; data URLs are skipped (binary). Memory: the automaton (shared) and a few integers per request.
 *
 * A refusal keeps only the SHA-256 of the body bytes read up to the match and the rule's id (`content_refusals`),
 * never the text.
 */
import { createHash, type Hash } from "node:crypto";
import { newId, type Db } from "@wellspring/db/core";
import type { Logger } from "../log.ts";

/** Longest term, characters after normalisation (bounds the automaton's depth). */
export const CONTENT_TERM_CHARS_MAX = 200;
/** How often a gateway reloads the rules, ms: a rule added by an admin applies within this time on every gateway. */
export const CONTENT_RULES_REFRESH_MS = 2_000;

const ZERO_WIDTH = new Set([0x200b, 0x200c, 0x200d, 0x2060, 0xfeff, 0x00ad, 0x180e]);

/** The normalised form of one code point (empty for characters that are dropped). */
function normalizeCodePoint(cp: number): string {
  if (cp < 0x80) return cp >= 0x41 && cp <= 0x5a ? String.fromCharCode(cp + 0x20) : String.fromCharCode(cp);
  if (ZERO_WIDTH.has(cp)) return "";
  if (cp >= 0xff01 && cp <= 0xff5e) return normalizeCodePoint(cp - 0xfee0); // full-width ASCII
  if (cp >= 0x4e00 && cp <= 0x9fff) return String.fromCodePoint(cp); // CJK ideographs: already normal
  return String.fromCodePoint(cp).normalize("NFKC").toLowerCase();
}

/** A term's normalised code points. */
export function normalizeTerm(term: string): number[] {
  const out: number[] = [];
  for (const ch of term) {
    for (const n of normalizeCodePoint(ch.codePointAt(0)!)) out.push(n.codePointAt(0)!);
  }
  return out;
}

export interface ContentRule {
  id: string;
  term: string;
}

/** Aho–Corasick automaton over normalised code points; state 0 is the root. */
export class TermMatcher {
  readonly #next: Map<number, number>[] = [new Map<number, number>()];
  readonly #fail: number[] = [0];
  /** The rule matched on reaching a state (its own term, or the longest suffix that is a term), or null. */
  readonly #out: (string | null)[] = [null];

  constructor(rules: readonly ContentRule[]) {
    for (const rule of rules) {
      const cps = normalizeTerm(rule.term);
      if (cps.length === 0 || cps.length > CONTENT_TERM_CHARS_MAX) continue;
      let s = 0;
      for (const cp of cps) {
        let t = this.#next[s]!.get(cp);
        if (t === undefined) {
          t = this.#next.length;
          this.#next.push(new Map());
          this.#fail.push(0);
          this.#out.push(null);
          this.#next[s]!.set(cp, t);
        }
        s = t;
      }
      this.#out[s] ??= rule.id;
    }
    // Breadth-first: failure links and inherited outputs.
    const queue: number[] = [...this.#next[0]!.values()];
    for (let i = 0; i < queue.length; i++) {
      const s = queue[i]!;
      for (const [cp, t] of this.#next[s]!) {
        let f = this.#fail[s]!;
        while (f !== 0 && !this.#next[f]!.has(cp)) f = this.#fail[f]!;
        const g = this.#next[f]!.get(cp);
        this.#fail[t] = g !== undefined && g !== t ? g : 0;
        this.#out[t] ??= this.#out[this.#fail[t]]!;
        queue.push(t);
      }
    }
  }

  get empty(): boolean {
    return this.#next[0]!.size === 0;
  }

  /** The state after `cp` from `state`. */
  step(state: number, cp: number): number {
    let s = state;
    for (;;) {
      const t = this.#next[s]!.get(cp);
      if (t !== undefined) return t;
      if (s === 0) return 0;
      s = this.#fail[s]!;
    }
  }

  matched(state: number): string | null {
    return this.#out[state]!;
  }

  /** The first rule matched in a whole text (for tests and previews). */
  find(text: string): string | null {
    let s = 0;
    for (const ch of text) {
      for (const n of normalizeCodePoint(ch.codePointAt(0)!)) {
        s = this.step(s, n.codePointAt(0)!);
        const hit = this.matched(s);
        if (hit) return hit;
      }
    }
    return null;
  }
}

const enum J {
  Outside,
  InString,
  Escape,
  Unicode,
}
const DATA_URL = "data:";

/** Reads one request body's JSON strings as they stream and reports the first rule matched. */
export class ContentScreen {
  #state = J.Outside;
  #ac = 0;
  #hex = "";
  /** A pending UTF-16 high surrogate from a `\u` escape. */
  #high = 0;
  /** UTF-8 decoding: the code point so far and the continuation bytes still expected. */
  #cp = 0;
  #need = 0;
  /** Characters of the current string seen (to recognise a data URL), and whether it is one. */
  #chars = 0;
  #dataUrl = false;
  /** The current string still starts like a data URL. */
  #prefix = true;
  #matched: string | null = null;
  readonly #hash: Hash = createHash("sha256");

  constructor(private readonly matcher: TermMatcher) {}

  /** The rule a chunk completed a match of (then the screen stops reading), or null. */
  push(chunk: Uint8Array): string | null {
    if (this.#matched) return this.#matched;
    this.#hash.update(chunk);
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      switch (this.#state) {
        case J.Outside:
          if (b === 0x22) this.#startString();
          break;
        case J.InString:
          if (this.#need > 0) {
            this.#cp = (this.#cp << 6) | (b & 0x3f);
            if (--this.#need === 0) this.#char(this.#cp);
          } else if (b === 0x22) this.#state = J.Outside;
          else if (b === 0x5c) this.#state = J.Escape;
          else if (b < 0x80) this.#char(b);
          else if (b >= 0xf0) [this.#cp, this.#need] = [b & 0x07, 3];
          else if (b >= 0xe0) [this.#cp, this.#need] = [b & 0x0f, 2];
          else [this.#cp, this.#need] = [b & 0x1f, 1];
          break;
        case J.Escape:
          if (b === 0x75) {
            this.#state = J.Unicode;
            this.#hex = "";
          } else {
            this.#char(b === 0x6e ? 0x0a : b === 0x74 ? 0x09 : b === 0x72 ? 0x0d : b);
            this.#state = J.InString;
          }
          break;
        case J.Unicode:
          this.#hex += String.fromCharCode(b);
          if (this.#hex.length === 4) {
            this.#state = J.InString;
            const unit = Number.parseInt(this.#hex, 16);
            if (Number.isNaN(unit)) break;
            if (unit >= 0xd800 && unit <= 0xdbff) this.#high = unit;
            else if (unit >= 0xdc00 && unit <= 0xdfff && this.#high) {
              this.#char(0x10000 + ((this.#high - 0xd800) << 10) + (unit - 0xdc00));
              this.#high = 0;
            } else this.#char(unit);
          }
          break;
      }
      if (this.#matched) return this.#matched;
    }
    return null;
  }

  #startString(): void {
    this.#state = J.InString;
    this.#ac = 0;
    this.#chars = 0;
    this.#dataUrl = false;
    this.#prefix = true;
    this.#need = 0;
    this.#high = 0;
  }

  #char(cp: number): void {
    if (this.#dataUrl) return;
    if (this.#chars < DATA_URL.length) {
      if (cp !== DATA_URL.charCodeAt(this.#chars)) this.#prefix = false;
      if (++this.#chars === DATA_URL.length && this.#prefix) this.#dataUrl = true;
    }
    // Fast paths for ASCII and CJK ideographs (already normal); everything else through NFKC.
    if (cp < 0x80) this.#feed(cp >= 0x41 && cp <= 0x5a ? cp + 0x20 : cp);
    else if (cp >= 0x4e00 && cp <= 0x9fff) this.#feed(cp);
    else for (const n of normalizeCodePoint(cp)) this.#feed(n.codePointAt(0)!);
  }

  #feed(cp: number): void {
    if (this.#matched) return;
    this.#ac = this.matcher.step(this.#ac, cp);
    const hit = this.matcher.matched(this.#ac);
    if (hit) this.#matched = hit;
  }

  /** SHA-256 (hex) of the body bytes read so far: all that is kept of a refused request. */
  digest(): string {
    return this.#hash.digest("hex");
  }
}

/** A request refused by a rule: what is kept of it. */
export interface ContentRefusalRecord {
  requestId: string;
  userId: string;
  keyId: string;
  ruleId: string;
  requestHash: string;
  api: string;
}

/**
 * The active rules as one shared matcher, reloaded every CONTENT_RULES_REFRESH_MS (a gateway that cannot reload
 * keeps the last rules it had), and the record of refusals.
 */
export class ContentRules {
  #matcher: TermMatcher | null = null;
  #timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.reload();
    this.#timer = setInterval(() => {
      this.reload().catch((error: unknown) => this.log.warn("content.rules_reload_failed", { error }));
    }, CONTENT_RULES_REFRESH_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  async reload(): Promise<void> {
    const rules = await this.db.contentRule.findMany({ where: { active: true }, select: { id: true, term: true }, orderBy: { createdAt: "asc" } });
    const matcher = new TermMatcher(rules);
    this.#matcher = matcher.empty ? null : matcher;
  }

  /** A screen for one request body; null when there are no rules (nothing to read). */
  screen(): ContentScreen | null {
    return this.#matcher ? new ContentScreen(this.#matcher) : null;
  }

  /** Keeps the refusal (hash and rule only); never awaited by the request. */
  async refused(r: ContentRefusalRecord): Promise<void> {
    await this.db.contentRefusal.create({
      data: { id: newId("crf"), requestId: r.requestId, userId: r.userId, keyId: r.keyId, ruleId: r.ruleId, requestHash: r.requestHash, api: r.api },
    });
  }
}
