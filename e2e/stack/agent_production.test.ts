/**
 * The key owner's path, with no development flag anywhere: a clean folder holding only what the agent image
 * holds (docker/agent.Dockerfile: its COPY lines, and the npm packages its RUN line installs), the enrollment
 * command exactly as the hub prints it, and the image's CMD run as written. The agent connects, reports its
 * models, and — this machine having no internet — a request fails cleanly as "provider unreachable" (the endpoint
 * check's lookup of the official host finds no answer) rather
 * than reaching any loopback provider. Then the launcher's own jobs: `deno task start` with a system Deno,
 * restarting a killed agent, never restarting a revoked one, and refusing an agent.json that would widen the
 * agent's network permission.
 */
import { chmod, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAdmin, type AdminContext } from "../../gateway/src/cli/admin.ts";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { ownerEnv, ownerFolder, readImage, type Image } from "./owner_folder.ts";
import {
  createTestDatabase,
  fund,
  ROOT,
  startGatewayProc,
  startProc,
  TEST_USER_FUNDING_MICROS,
  type GatewayProc,
  type Proc,
  type TestDatabase,
} from "./harness.ts";

/** Exit codes of agent-deno/src/exit_codes.ts. */
const EXIT_REFUSED_BY_HUB = 77;
const EXIT_CONFIG = 78;

let database: TestDatabase;
let gateway: GatewayProc;
let mock: MockProvider;
let pool: pg.Pool;
let admin: AdminContext;
let apiKey: string;
const ownerEmail = `${newId("usr")}@owner.test`;

beforeAll(async () => {
  database = await createTestDatabase();
  // Started only to prove that nothing reaches a loopback provider: the production agent has no such origin.
  mock = await startMockProvider();
  // A production hub, as `npm start` runs it: development agents are refused.
  gateway = await startGatewayProc(database.url, { HUB_DEVELOPMENT: "0" });
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  // The running gateway published its agent URL and pin (hub_endpoints); the CLI prints them.
  admin = { db: database.db, pool };
  const userId = newId("usr");
  await database.db.user.create({ data: { id: newId("usr"), email: ownerEmail, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "production test")).secret;
  await fund(database.url, userId, TEST_USER_FUNDING_MICROS);
}, 120_000);

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  await gateway?.stop();
  await mock?.close();
  await pool?.end();
  await database?.drop();
  await rm(gateway?.dataDir ?? "/nonexistent", { recursive: true, force: true });
});

async function servedModels(): Promise<string[]> {
  const res = await fetch(`${gateway.apiOrigin}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
  return ((await res.json()) as { data: { id: string }[] }).data.map((m) => m.id);
}

/** Polls `check` until it holds or `timeoutMs` passes (a deadline, not a fixed wait). */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function events(proc: Proc, event: string): Record<string, unknown>[] {
  return proc.lines.filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

function exited(proc: Proc): Promise<number | null> {
  if (proc.child.exitCode !== null) return Promise.resolve(proc.child.exitCode);
  return new Promise((r) => proc.child.once("exit", (code) => r(code)));
}

describe("an agent installed and started as the docs tell an owner", () => {
  let image: Image;
  let agentDir: string;
  let agentId: string;
  let agent: Proc;

  it("enrolls with the printed command, connects with the image's command, and fails cleanly offline", async () => {
    image = await readImage();
    expect(image.cmd).toEqual(["./wellspring-agent", "start"]);
    const folder = await ownerFolder(image);
    cleanups.push(() => rm(folder.root, { recursive: true, force: true }));
    agentDir = folder.agentDir;

    // What the hub operator hands the owner (the portal prints the same command: enrollCommand).
    const printed = await runAdmin(admin, ["enroll-token", "--email", ownerEmail]);
    const enrollLine = printed
      .split("\n")
      .map((l) => l.trim())
      .find((l) => l.startsWith("./wellspring-agent enroll "));
    expect(enrollLine, printed).toBeDefined();
    expect(printed.split("\n")).toContain("./wellspring-agent start");
    expect(printed.includes(image.cmd.join(" "))).toBe(true);
    const enroll = startProc("/bin/sh", ["-c", enrollLine!], { cwd: agentDir, env: ownerEnv() });
    agentId = (await enroll.waitForLine(/enrolled as (agt_\w+)/, 60_000))[1]!;
    expect(await exited(enroll)).toBe(0);

    await writeFile(
      join(agentDir, "data/config.json"),
      JSON.stringify({
        name: "office-agent",
        upstreams: [{ provider: "openai", apiKeyEnv: "OPENAI_API_KEY", models: ["gpt-4o-mini"] }],
      }),
      { mode: 0o600 },
    );
    const [cmd, ...args] = image.cmd;
    agent = startProc(cmd!, args, { cwd: agentDir, env: ownerEnv() });
    const dockerAgent = agent;
    cleanups.push(() => dockerAgent.stop());
    await agent.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
    const [granted] = events(agent, "launcher.permissions");
    const data = join(agentDir, "data");
    expect(granted!.permissions).toEqual([
      `--allow-net=${new URL(gateway.agentOrigin).host},api.openai.com`,
      `--allow-read=${data}`,
      `--allow-write=${data}/state`,
      "--allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE,OPENAI_API_KEY",
    ]);
    await eventually(async () => (await servedModels()).includes("gpt-4o-mini"), 10_000, "the agent's inventory");
    // The image's health check, run as written: the agent's status command reads its status file (no port).
    const [hcCmd, ...hcArgs] = image.healthcheck;
    expect(image.healthcheck).toEqual(["./wellspring-agent", "status"]);
    const health = startProc(hcCmd!, hcArgs, { cwd: agentDir, env: ownerEnv() });
    expect(await exited(health), health.lines.join("\n")).toBe(0);
    expect(health.lines.join("\n")).toMatch(/running: yes[\s\S]*connected since/);

    const res = await fetch(`${gateway.apiOrigin}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] }),
    });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("agent_unreachable");
    // The endpoint check's lookup of api.openai.com ran under the granted permission (not EPERM) and found no answer here.
    const unresolved = events(agent, "endpoint.unresolved");
    expect(unresolved).toHaveLength(1);
    expect(unresolved[0]!.host).toBe("api.openai.com");
    expect(String(unresolved[0]!.error)).not.toMatch(/EPERM|NotCapable|permission/i);
    expect(mock.requests).toHaveLength(0);
    expect(agent.lines.some((l) => l.includes("dev_upstream") || l.includes("NotCapable"))).toBe(false);

    // SIGTERM stops it for good: the launcher forwards it and does not restart.
    expect(await agent.stop("SIGTERM")).toBe(0);
    expect(events(agent, "launcher.agent_restarting")).toHaveLength(0);
    // Stopped, the health check fails.
    const after = startProc(hcCmd!, hcArgs, { cwd: agentDir, env: ownerEnv() });
    expect(await exited(after)).toBe(1);
    expect(after.lines.join("\n")).toMatch(/hub: .*not connected/);
  }, 180_000);

  it("`deno task start` runs the same launcher with a system Deno, passing over an npm JavaScript shim on PATH", async () => {
    const bin = await mkdtemp(join(tmpdir(), "ws-owner-bin-"));
    cleanups.push(() => rm(bin, { recursive: true, force: true }));
    await mkdir(join(bin, "shim"));
    await writeFile(join(bin, "shim/deno"), "#!/usr/bin/env node\nrequire('child_process');\n");
    await chmod(join(bin, "shim/deno"), 0o755);
    await mkdir(join(bin, "system"));
    await symlink(join(ROOT, "node_modules/deno/deno"), join(bin, "system/deno"));
    agent = startProc(join(bin, "system/deno"), ["task", "start"], { cwd: agentDir, env: ownerEnv([join(bin, "shim"), join(bin, "system")]) });
    const taskAgent = agent;
    cleanups.push(() => taskAgent.stop());
    await agent.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
    await eventually(async () => (await servedModels()).includes("gpt-4o-mini"), 10_000, "the agent's inventory");
  }, 120_000);

  it("a killed agent is restarted by its launcher and reconnects", async () => {
    const [first] = events(agent, "launcher.agent_started");
    process.kill(first!.pid as number, "SIGKILL");
    await eventually(() => events(agent, "launcher.agent_started").length === 2, 30_000, "the restart");
    const [restart] = events(agent, "launcher.agent_restarting");
    expect(restart).toMatchObject({ exitCode: 137, signal: "SIGKILL", attempt: 1, inMs: 1_000 });
    await eventually(() => agent.lines.filter((l) => l === "WELLSPRING_AGENT_READY").length === 2, 60_000, "the second connection");
    await eventually(async () => (await servedModels()).includes("gpt-4o-mini"), 10_000, "the agent's inventory again");
    expect(agent.child.exitCode).toBeNull();
  }, 120_000);

  it("the same agent started with --dev-upstream is refused by this production hub (close 4033) and not restarted", async () => {
    const data = await mkdtemp(join(tmpdir(), "ws-owner-dev-"));
    cleanups.push(() => rm(data, { recursive: true, force: true }));
    await cp(join(agentDir, "data"), data, { recursive: true });
    const dev = startProc("./wellspring-agent", ["start", "--data", data, "--dev-upstream", mock.origin], { cwd: agentDir, env: ownerEnv() });
    cleanups.push(() => dev.stop());
    expect(await exited(dev)).toBe(EXIT_REFUSED_BY_HUB);
    expect(dev.lines.join("\n")).toContain("the hub runs in production and refuses an agent with a development upstream (close code 4033)");
    expect(events(dev, "launcher.agent_stopped")).toEqual([expect.objectContaining({ exitCode: EXIT_REFUSED_BY_HUB, reason: "fatal" })]);
    expect(events(gateway, "tunnel.development_agent_refused")).toEqual([expect.objectContaining({ agentId })]);
    // No request of a user reached it (the agent may have read its provider's model list at start, a GET).
    expect(mock.requests.filter((r) => r.method !== "GET")).toEqual([]);
    // The production agent kept serving.
    expect(agent.child.exitCode).toBeNull();
  }, 60_000);

  it("a revoked agent stops and is not restarted", async () => {
    await runAdmin(admin, ["revoke-agent", "--id", agentId]);
    expect(await exited(agent)).toBe(EXIT_REFUSED_BY_HUB);
    expect(events(agent, "launcher.agent_stopped")).toEqual([expect.objectContaining({ exitCode: EXIT_REFUSED_BY_HUB, reason: "fatal" })]);
    expect(events(agent, "launcher.agent_started")).toHaveLength(2);
    await agent.stop();
  }, 60_000);

  it("an agent.json whose hub URL names another host or a path is refused at launch", async () => {
    const identity = JSON.parse(await readFile(join(agentDir, "data/agent.json"), "utf8")) as Record<string, unknown>;
    const origin = new URL(gateway.agentOrigin);
    // A comma in the host would split the network permission: every port of the hub's host, and another host.
    for (const hubUrl of [
      `https://${origin.hostname},exfiltrate.example.com:${origin.port}`,
      `https://${origin.host}/agent`,
      `https://owner@exfiltrate.example.com`,
      `http://${origin.host}`,
    ]) {
      const data = await mkdtemp(join(tmpdir(), "ws-owner-edited-"));
      cleanups.push(() => rm(data, { recursive: true, force: true }));
      await cp(join(agentDir, "data"), data, { recursive: true });
      await writeFile(join(data, "agent.json"), JSON.stringify({ ...identity, hubUrl }));
      const proc = startProc("./wellspring-agent", ["start", "--data", data], { cwd: agentDir, env: ownerEnv() });
      try {
        const [first] = await proc.waitForLine(/^.*"event":"launcher\.(refused|agent_started)".*$/, 20_000);
        expect(JSON.parse(first), hubUrl).toMatchObject({ event: "launcher.refused", error: expect.stringMatching(/Cannot use hub URL/) });
        expect(await exited(proc), hubUrl).toBe(EXIT_CONFIG);
      } finally {
        await proc.stop();
      }
    }
  }, 60_000);
});
