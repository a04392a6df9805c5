/**
 * What operators see, through real processes: the gateway's `/metrics` (admin listener) exposes the named
 * series after real traffic — request latency by route and model, time to first byte, stream counts, tunnel
 * frames and bytes, connected agents, limiter and billing decisions, settlement batch sizes, spool depth, and
 * the standard process metrics; one request's id is in the gateway's `request.end` and the agent's `stream.end`
 * log lines, with no key or prompt anywhere in either process's output; readiness flips to 503 when PostgreSQL
 * stops and back when it starts again.
 */
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startEmbeddedPostgres, type EmbeddedDb } from "@wellspring/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAgentProc, startGatewayProc, startStack, type GatewayProc, type Stack } from "./harness.ts";

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ gatewayEnv: { LOG_LEVEL: "info" } });
  // The agent logs at info too (its access log): restart it with that configuration.
  const configPath = join(stack.agent.dataDir, "config.json");
  await writeFile(configPath, JSON.stringify({ ...(JSON.parse(await readFile(configPath, "utf8")) as object), logLevel: "info" }));
  await stack.agent.stop();
  stack.agent = await startAgentProc(stack.agent.dataDir, stack.agent.agentId, stack.mock.origin);
  await stack.waitForModel("gpt-4o-mini");
}, 180_000);

afterAll(async () => {
  await stack?.close();
});

/** `name{labels} value` lines of a Prometheus text exposition. */
function samples(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  return text
    .split("\n")
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .map((l) => {
      const m = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)$/.exec(l)!;
      const labels = Object.fromEntries([...(m[1] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!]));
      return { labels, value: Number(m[2]) };
    });
}

const sum = (xs: { value: number }[]) => xs.reduce((n, x) => n + x.value, 0);

describe("observability", () => {
  it("the metrics endpoint exposes the named series after real traffic", async () => {
    const call = (body: unknown, path = "/v1/chat/completions") =>
      fetch(`${stack.baseUrl}${path}`, {
        method: "POST",
        headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json", "anthropic-version": "2023-06-01" },
        body: JSON.stringify(body),
      });
    for (let i = 0; i < 3; i++)
      expect(
        (await (await call({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "[mock chunks=4] hi" }] })).text()).length,
      ).toBeGreaterThan(0);
    expect((await call({ model: "gpt-4o", messages: [{ role: "user", content: "hello" }] })).status).toBe(200);
    expect((await call({ model: "no-such-model", messages: [{ role: "user", content: "hello" }] })).status).toBe(404);
    expect((await call({ model: "claude-haiku-4-5", messages: [{ role: "user", content: "count me" }] }, "/v1/messages/count_tokens")).status).toBe(200);
    let text = "";
    await expect
      .poll(
        async () => {
          text = await (await fetch(`${stack.gateway.adminOrigin}/metrics`)).text();
          return sum(samples(text, "wellspring_settlement_batch_size_count"));
        },
        { timeout: 10_000 },
      )
      .toBeGreaterThan(0);

    const chat = samples(text, "wellspring_request_duration_seconds_count").filter((s) => s.labels.route === "/v1/chat/completions");
    expect(chat.find((s) => s.labels.model === "gpt-4o-mini" && s.labels.status_class === "2xx")?.value).toBe(3);
    expect(chat.find((s) => s.labels.model === "gpt-4o" && s.labels.status_class === "2xx")?.value).toBe(1);
    // A refused model never becomes a label: it counts as `none`.
    expect(chat.find((s) => s.labels.model === "none" && s.labels.status_class === "4xx")?.value).toBe(1);
    expect(samples(text, "wellspring_request_duration_seconds_bucket").some((s) => s.labels.le === "+Inf")).toBe(true);
    expect(sum(samples(text, "wellspring_request_ttfb_seconds_count").filter((s) => s.labels.model === "gpt-4o-mini"))).toBe(3);
    expect(samples(text, "wellspring_requests_total").find((s) => s.labels.end_cause === "completed" && s.labels.streamed === "true")?.value).toBe(3);
    expect(samples(text, "wellspring_streams_open")[0]?.value).toBe(0);
    expect(samples(text, "wellspring_tunnel_streams_total")[0]?.value).toBe(5);
    expect(samples(text, "wellspring_tunnel_frames_total").find((s) => s.labels.direction === "in" && s.labels.type === "DATA")!.value).toBeGreaterThan(0);
    expect(samples(text, "wellspring_tunnel_frames_total").find((s) => s.labels.direction === "out" && s.labels.type === "OPEN")!.value).toBe(5);
    expect(samples(text, "wellspring_tunnel_bytes_total").find((s) => s.labels.direction === "in")!.value).toBeGreaterThan(0);
    expect(samples(text, "wellspring_agents_connected")[0]?.value).toBe(1);
    expect(samples(text, "wellspring_limiter_decisions_total").find((s) => s.labels.limiter === "free_routes" && s.labels.decision === "allowed")?.value).toBe(
      1,
    );
    expect(samples(text, "wellspring_billing_decisions_total").find((s) => s.labels.decision === "held")?.value).toBe(4);
    expect(samples(text, "wellspring_spool_settlements")[0]?.value).toBe(0);
    expect(samples(text, "wellspring_spool_records")[0]?.value).toBe(0);
    expect(samples(text, "wellspring_ready")[0]?.value).toBe(1);
    expect(samples(text, "wellspring_ledger_up")[0]?.value).toBe(1);
    for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes"]) {
      expect(samples(text, name).length, name).toBeGreaterThan(0);
    }
  }, 60_000);

  it("one request's id is in the gateway's and the agent's log lines, and no key or prompt is in either", async () => {
    const prompt = "a private prompt 7c1e [mock chunks=2]";
    const res = await fetch(`${stack.baseUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${stack.apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: prompt }] }),
    });
    const requestId = res.headers.get("x-wellspring-request-id")!;
    await res.text();
    const line = async (proc: { lines: string[] }, event: string) => {
      for (let i = 0; i < 200; i++) {
        const found = proc.lines.find((l) => l.includes(`"event":"${event}"`) && l.includes(requestId));
        if (found) return JSON.parse(found) as Record<string, unknown>;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no ${event} line for ${requestId}`);
    };
    expect(await line(stack.gateway, "request.end")).toMatchObject({
      requestId,
      route: "/v1/chat/completions",
      model: "gpt-4o-mini",
      status: 200,
      endCause: "completed",
      agentId: stack.agent.agentId,
    });
    expect(await line(stack.agent, "stream.end")).toMatchObject({ requestId, model: "gpt-4o-mini", outcome: "completed", status: 200 });
    const everything = [...stack.gateway.lines, ...stack.agent.lines].join("\n");
    for (const secret of [stack.apiKey, "sk-test-owner-openai-key-123", "sk-ant-test-owner-key", "a private prompt"]) expect(everything).not.toContain(secret);
  }, 60_000);
});

describe("readiness", () => {
  let pg: EmbeddedDb;
  let pgDir: string;
  let gateway: GatewayProc;

  afterAll(async () => {
    await gateway?.stop();
    await pg?.stop().catch(() => {});
    if (pgDir) await rm(pgDir, { recursive: true, force: true });
  });

  it("readiness flips to 503 when PostgreSQL stops, and back when it starts again", async () => {
    pgDir = await mkdtemp(join(tmpdir(), "ws-ready-pg-"));
    // As root, the embedded server runs as the postgres user, which must be able to enter the folder.
    await chmod(pgDir, 0o755);
    pg = await startEmbeddedPostgres(pgDir);
    const port = Number(new URL(pg.url).port);
    gateway = await startGatewayProc(pg.url);
    const ready = async () => {
      const res = await fetch(`${gateway.apiOrigin}/readyz`);
      return { status: res.status, body: (await res.json()) as { ready: boolean; ledger: string; tunnel: string } };
    };
    expect(await ready()).toEqual({ status: 200, body: expect.objectContaining({ ready: true, ledger: "reachable", tunnel: "listening" }) });
    await pg.stop();
    await expect.poll(async () => (await ready()).status, { timeout: 30_000, interval: 200 }).toBe(503);
    expect((await ready()).body).toMatchObject({ ready: false, ledger: "unreachable" });
    const metrics = await (await fetch(`${gateway.adminOrigin}/metrics`)).text();
    expect(samples(metrics, "wellspring_ready")[0]?.value).toBe(0);
    expect(samples(metrics, "wellspring_ledger_up")[0]?.value).toBe(0);
    // Liveness is the process, not its database.
    expect((await fetch(`${gateway.apiOrigin}/healthz`)).status).toBe(200);
    pg = await startEmbeddedPostgres(pgDir, port);
    await expect.poll(async () => (await ready()).status, { timeout: 30_000, interval: 200 }).toBe(200);
  }, 120_000);
});
