/**
 * The canary scheduler against a real PostgreSQL, with agents played by in-process links (each answers the frames
 * the scheduler sends) and an injected clock: when canaries are due, that each goes to its own agent only, what is
 * recorded for an answer, an error and a timeout, and the flag a substitution raises.
 */
import { describe, expect, it } from "vitest";
import { decodeFrame, FrameType, SendWindow, type Inventory, type RequestHead } from "@wellspring/protocol";
import { useTestDatabase } from "../../../e2e/support/test_database.ts";
import { createLogger } from "../log.ts";
import { HubStream, type AgentLink, type StreamSink } from "../tunnel/hub_stream.ts";
import { CANARY_JITTER_FRACTION, CanaryScheduler, MODEL_SUBSTITUTION, type CanaryAgents } from "./canary.ts";
import { tokenCount } from "../billing/estimate.ts";
import { canaryPrompt } from "./canary_check.ts";

const INTERVAL_MS = 60_000;
const WINDOW_BYTES = 1 << 20;

/** What a fake agent does with a canary: answer (status, JSON), stay silent, or reset. */
type Behaviour = (head: RequestHead, code: string) => { status: number; json: unknown } | "silent" | { reset: number };

/** An agent connection played in process: it reads the frames the scheduler sends and answers by `behaviour`. */
class FakeAgent implements AgentLink {
  readonly remote = false;
  readonly routable = true;
  readonly isClosed = false;
  readonly capacity = 4;
  readonly rateSaturatedUntilMs = 0;
  inFlight = 0;
  readonly heads: RequestHead[] = [];

  constructor(
    readonly agentId: string,
    readonly inventory: Inventory,
    public behaviour: Behaviour,
  ) {}

  openStream(head: RequestHead, sink: StreamSink): HubStream {
    this.heads.push(head);
    const body: Uint8Array[] = [];
    const stream: HubStream = new HubStream(
      1,
      {
        send: (bytes) => {
          const decoded = decodeFrame(bytes);
          if (!decoded.ok) throw new Error("bad frame");
          const f = decoded.frame;
          if (f.type === FrameType.DATA) body.push(f.payload.slice());
          if (f.type === FrameType.END) setImmediate(() => this.#answer(stream, head, Buffer.concat(body)));
        },
        connectionSendWindow: new SendWindow(WINDOW_BYTES),
        forget: () => {},
      },
      sink,
      WINDOW_BYTES,
      WINDOW_BYTES,
    );
    return stream;
  }

  #answer(stream: HubStream, head: RequestHead, body: Buffer): void {
    const { messages } = JSON.parse(body.toString()) as { messages: { content: string }[] };
    const code = /Reply with exactly: (\S+)$/.exec(messages[0]!.content)![1]!;
    const b = this.behaviour(head, code);
    if (b === "silent") return;
    if ("reset" in b) return stream.onRemoteReset(b.reset, "refused", "agent");
    stream.onResponse({ status: b.status, headers: [["content-type", "application/json"]] });
    stream.onData(Buffer.from(JSON.stringify(b.json)));
    stream.onEnd(null);
  }

  sendSettlement(): void {}
}

/** The prompt tokens an o200k model reports for the canary with `code`: its text and 7 tokens of message framing. */
const reported = (code: string) => tokenCount(canaryPrompt(code)) + 7;
const honest: Behaviour = (head, code) => ({
  status: 200,
  json: { model: `${head.model}-2024-07-18`, choices: [{ message: { content: code } }], usage: { prompt_tokens: reported(code), completion_tokens: 4 } },
});

const database = useTestDatabase();

const inventory = (models: string[]): Inventory => ({
  agentVersion: "test",
  models: models.map((model) => ({ provider: "openai" as const, model, contextTokens: null })),
  keyFingerprints: [],
  concurrentStreamsMax: 4,
});

function setup(agents: FakeAgent[], status: "active" | "paused" = "active", timeoutMs = 5_000, random = () => 0.5) {
  let now = Date.parse("2026-12-02T00:00:00Z");
  const registry: CanaryAgents = {
    connections: () => agents,
    profile: (id) => ({ ownerId: `usr_owner_${id}`, status, tier: "A" as const, discountLane: false }),
  };
  const scheduler = new CanaryScheduler({
    db: database().db,
    log: createLogger({}, "error"),
    registry,
    intervalMs: INTERVAL_MS,
    firstDelayMsMax: 0,
    timeoutMs,
    now: () => now,
    random, // 0.5 (default): no jitter, the interval exactly
  });
  return {
    scheduler,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

const rows = (agentId: string) => database().db.canaryResult.findMany({ where: { agentId }, orderBy: { at: "asc" } });

/** Ticks until `agentId` has `n` results (a canary's answer arrives on the next turns of the event loop). */
async function untilResults(scheduler: CanaryScheduler, agentId: string, n: number): Promise<void> {
  for (let i = 0; i < 200 && ((await rows(agentId)).length < n || scheduler.running > 0); i++) {
    await scheduler.tick();
    await new Promise((r) => setImmediate(r));
  }
  expect(await rows(agentId)).toHaveLength(n);
}

describe("the canary scheduler", () => {
  it("canaries each chat model of each agent on its own link, then not again until the interval has passed", async () => {
    const a = new FakeAgent("agt_sched_a", inventory(["gpt-4o-mini", "text-embedding-3-small"]), honest);
    const b = new FakeAgent("agt_sched_b", inventory(["gpt-4o"]), honest);
    const { scheduler, advance } = setup([a, b]);
    await untilResults(scheduler, a.agentId, 1);
    await untilResults(scheduler, b.agentId, 1);
    // Each agent got its own models' canaries only: no embedding canary, nothing routed to the other agent.
    expect(a.heads.map((h) => h.model)).toEqual(["gpt-4o-mini"]);
    expect(b.heads.map((h) => h.model)).toEqual(["gpt-4o"]);
    expect(a.heads[0]!.requestId).toMatch(/^cnr_/);
    const [row] = await rows(a.agentId);
    expect(row).toMatchObject({ model: "openai:gpt-4o-mini", ok: true, error: null, problems: [], completionTokens: 4 });
    expect(row!.promptTokens).toBe(row!.expectedPromptTokens + 7);
    expect(row!.ttfbMs).toBe(0); // the injected clock did not move
    advance(INTERVAL_MS - 1);
    for (let i = 0; i < 5; i++) await scheduler.tick();
    expect(a.heads).toHaveLength(1);
    advance(1);
    await untilResults(scheduler, a.agentId, 2);
    expect(await database().db.riskFlag.count({ where: { kind: MODEL_SUBSTITUTION } })).toBe(0);
  });

  it("a gateway that newly holds an agent keeps its interval from the last canary any gateway recorded", async () => {
    const a = new FakeAgent("agt_sched_a", inventory(["gpt-4o-mini"]), honest);
    const { scheduler, advance } = setup([a]); // a fresh scheduler: another gateway, the same database
    const before = await rows(a.agentId);
    const last = before.at(-1)!.at.getTime();
    advance(last - Date.parse("2026-12-02T00:00:00Z") + INTERVAL_MS - 1_000);
    for (let i = 0; i < 5; i++) await scheduler.tick();
    expect(a.heads).toHaveLength(0);
    advance(1_000);
    await untilResults(scheduler, a.agentId, before.length + 1);
    expect(a.heads).toHaveLength(1);
  });

  it("draws each interval within ±CANARY_JITTER_FRACTION", async () => {
    const a = new FakeAgent("agt_sched_jitter", inventory(["gpt-4o-mini"]), honest);
    const { scheduler, advance } = setup([a], "active", 5_000, () => 0); // the shortest draw
    await untilResults(scheduler, a.agentId, 1);
    const shortest = INTERVAL_MS * (1 - CANARY_JITTER_FRACTION);
    advance(shortest - 1);
    for (let i = 0; i < 5; i++) await scheduler.tick();
    expect(a.heads).toHaveLength(1);
    advance(1);
    await untilResults(scheduler, a.agentId, 2);
  });

  it("records errors and timeouts without a flag, and skips paused or full agents", async () => {
    const failing = new FakeAgent("agt_sched_err", inventory(["gpt-4o-mini"]), () => ({ status: 503, json: { error: { message: "overloaded" } } }));
    const f = setup([failing]);
    await untilResults(f.scheduler, failing.agentId, 1);
    expect((await rows(failing.agentId))[0]).toMatchObject({ ok: false, error: "http_503", problems: [], promptTokens: null });

    const silent = new FakeAgent("agt_sched_silent", inventory(["gpt-4o-mini"]), () => "silent");
    const s = setup([silent], "active", 1);
    await untilResults(s.scheduler, silent.agentId, 1);
    expect((await rows(silent.agentId))[0]).toMatchObject({ ok: false, error: "timeout", ttfbMs: null });

    const reset = new FakeAgent("agt_sched_reset", inventory(["gpt-4o-mini"]), () => ({ reset: 5 }));
    await untilResults(setup([reset]).scheduler, reset.agentId, 1);
    expect((await rows(reset.agentId))[0]).toMatchObject({ ok: false, error: "reset_5" });

    const paused = new FakeAgent("agt_sched_paused", inventory(["gpt-4o-mini"]), honest);
    const p = setup([paused], "paused");
    const full = new FakeAgent("agt_sched_full", inventory(["gpt-4o-mini"]), honest);
    full.inFlight = full.capacity;
    const q = setup([full]);
    for (let i = 0; i < 5; i++) await Promise.all([p.scheduler.tick(), q.scheduler.tick()]);
    expect(paused.heads).toHaveLength(0);
    expect(full.heads).toHaveLength(0);
    expect(await database().db.riskFlag.count({ where: { kind: MODEL_SUBSTITUTION } })).toBe(0);
  });

  it("a substituted answer raises model_substitution once per agent, counting every failing canary", async () => {
    const cheat = new FakeAgent("agt_sched_cheat", inventory(["gpt-4o"]), (_head, code) => ({
      status: 200,
      json: { model: "gpt-4o-mini", choices: [{ message: { content: code } }], usage: { prompt_tokens: reported(code), completion_tokens: 4 } },
    }));
    const { scheduler, advance } = setup([cheat]);
    await untilResults(scheduler, cheat.agentId, 1);
    advance(INTERVAL_MS);
    await untilResults(scheduler, cheat.agentId, 2);
    const flags = await database().db.riskFlag.findMany({ where: { kind: MODEL_SUBSTITUTION, subject: `agent:${cheat.agentId}` } });
    expect(flags).toHaveLength(1);
    expect(flags[0]).toMatchObject({
      severity: 3,
      raisedCount: 2,
      evidence: {
        agentId: cheat.agentId,
        ownerId: `usr_owner_${cheat.agentId}`,
        failedCanaries: 2,
        models: ["openai:gpt-4o"],
        latest: { model: "openai:gpt-4o", answeredModel: "gpt-4o-mini", problems: ["model_differs"], completionTokens: 4 },
      },
    });
  });
});
