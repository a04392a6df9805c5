/**
 * Signed self-update through the real launcher (`./wellspring-agent start` in an owner's folder that pins test
 * release keys), a real gateway and the mock provider:
 *
 *  - an update from the installed version N to N+1, published with the operator's commands while streams run,
 *    drops no accepted request (every 200 completes; the swap's gap answers 503 with Retry-After, which SDKs retry);
 *  - tampered, older, expired, unsigned, wrongly signed and oversized releases (served as a compromised hub
 *    would) are refused, and the agent keeps running the version it runs;
 *  - agents below the minimum version are refused at the handshake, and the owner's agent page says so;
 *  - kill -9 of the whole agent (launcher, fetcher, agent) at random moments of an update always leaves an agent
 *    that boots a verified version, and the update completes after the restart. OTA_KILL_CYCLES sets how many
 *    cycles (default 5; the report's figure is a 50-cycle run).
 */
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RELEASE_FORMAT, releaseKeyId, signManifest, PROTOCOL_VERSION, type ReleaseKeySet, type ReleaseManifest } from "@wellspring/protocol";
import { runAdmin } from "../../gateway/src/cli/admin.ts";
import { issueKey } from "../../gateway/src/ops/keys.ts";
import { setReleasePolicy } from "../../gateway/src/ops/releases.ts";
import { build, keygen, pin, verifyDir } from "../../scripts/release.ts";
import {
  createTestDatabase,
  enrollAgent,
  fund,
  ROOT,
  startGatewayProc,
  startProc,
  TEST_USER_FUNDING_MICROS,
  type GatewayProc,
  type Proc,
  type TestDatabase,
} from "./harness.ts";

const KILL_CYCLES = Number(process.env.OTA_KILL_CYCLES ?? 5);
const INSTALLED = /AGENT_VERSION = "([^"]+)"/.exec(await readFile(join(ROOT, "agent-deno/src/version.ts"), "utf8"))![1]!;
const [MAJOR, MINOR, PATCH] = INSTALLED.split(".").map(Number) as [number, number, number];
const NEXT = `${MAJOR}.${MINOR}.${PATCH + 1}`;
const v = (minorBump: number, patch: number) => `${MAJOR}.${MINOR + minorBump}.${patch}`;

let database: TestDatabase;
let gateway: GatewayProc;
let mock: MockProvider;
let pool: pg.Pool;
let apiKey: string;
let ownerId: string;
let work: string;
let install: string;
let keys: ReleaseKeySet;
let primaryKey: string;
let strangerKey: string;
let enrolled: { dataDir: string; agentId: string };
let releaseDir: string;

/** An owner's agent folder as the image lays it out (agent-deno/ and protocol/), pinning `keys`. */
async function ownerInstall(root: string, version: string): Promise<string> {
  for (const part of ["agent-deno", "protocol"]) {
    await cp(join(ROOT, part), join(root, part), { recursive: true, filter: (src) => !/node_modules|\/data(\/|$)/.test(src.slice(ROOT.length)) });
  }
  const agentDir = join(root, "agent-deno");
  await mkdir(join(agentDir, "node_modules"), { recursive: true });
  await cp(join(ROOT, "node_modules/ws"), join(agentDir, "node_modules/ws"), { recursive: true });
  await symlink(join(ROOT, "node_modules/deno"), join(agentDir, "node_modules/deno"));
  await writeFile(
    join(agentDir, "src/version.ts"),
    (await readFile(join(agentDir, "src/version.ts"), "utf8")).replace(/AGENT_VERSION = "[^"]+"/, `AGENT_VERSION = "${version}"`),
  );
  await writeFile(join(agentDir, "release-keys.json"), JSON.stringify(keys, null, 2) + "\n");
  return agentDir;
}

async function exitOf(proc: Proc): Promise<number | null> {
  if (proc.child.exitCode !== null) return proc.child.exitCode;
  return new Promise((r) => proc.child.once("exit", (code) => r(code)));
}

function events(proc: Proc, event: string): Record<string, unknown>[] {
  return proc.lines.filter((l) => l.includes(`"event":"${event}"`)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function eventually<T>(check: () => T | null | undefined | false | Promise<T | null | undefined | false>, timeoutMs: number, what: string): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const r = await check();
    if (r) return r;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}

function launch(dataDir: string): Proc {
  return startProc(join(install, "wellspring-agent"), ["start", "--data", dataDir, "--dev-upstream", mock.origin], {
    cwd: install,
    env: { TEST_OPENAI_KEY: "sk-test-owner-openai-key-123" },
  });
}

async function agentStatus(dataDir: string): Promise<{ version: string; connected: boolean; pid: number } | null> {
  try {
    return JSON.parse(await readFile(join(dataDir, "state/status.json"), "utf8")) as { version: string; connected: boolean; pid: number };
  } catch {
    return null;
  }
}

/** A fresh copy of the enrolled agent's identity and configuration (no state, no releases), dialing `hubUrl`. */
async function freshData(hubUrl?: string): Promise<string> {
  const dir = await mkdtemp(join(work, "data-"));
  for (const f of ["agent.json", "agent-key.pk8", "config.json"]) await cp(join(enrolled.dataDir, f), join(dir, f));
  if (hubUrl) {
    const identity = JSON.parse(await readFile(join(dir, "agent.json"), "utf8")) as Record<string, unknown>;
    await writeFile(join(dir, "agent.json"), JSON.stringify({ ...identity, hubUrl }));
  }
  return dir;
}

/** A release stored as a compromised hub would serve it: straight into the table, then offered. */
async function serveRaw(version: string, files: { manifest: string; signatures: string; bundle: Uint8Array }): Promise<void> {
  await pool.query("INSERT INTO agent_releases (version, manifest, signatures, bundle, published_by) VALUES ($1, $2, $3, $4, 'test:compromised-hub')", [
    version,
    files.manifest,
    files.signatures,
    Buffer.from(files.bundle),
  ]);
  await setReleasePolicy(database.db, { latestVersion: version }, "test");
}

async function signedFiles(manifest: ReleaseManifest, keyFile: string | null): Promise<{ manifest: string; signatures: string }> {
  const text = JSON.stringify(manifest, null, 2) + "\n";
  if (!keyFile) return { manifest: text, signatures: '{"signatures":[]}' };
  const pkcs8 = await readFile(keyFile);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return {
    manifest: text,
    signatures: JSON.stringify({ signatures: [{ keyId: await releaseKeyId(jwk.x!), signature: await signManifest(key, new TextEncoder().encode(text)) }] }),
  };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "ws-ota-"));
  database = await createTestDatabase();
  mock = await startMockProvider();
  gateway = await startGatewayProc(database.url);
  pool = new pg.Pool({ connectionString: database.url, max: 2 });
  ownerId = newId("usr");
  const userId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  await database.db.user.create({ data: { id: userId, email: `${userId}@user.test` } });
  apiKey = (await issueKey(database.db, userId, "ota")).secret;
  await fund(database.url, userId, TEST_USER_FUNDING_MICROS);
  // The platform's release keys: a primary and a backup, pinned by the install; and a key nobody pinned.
  const keyDir = join(work, "keys");
  primaryKey = (await keygen(keyDir, "primary")).privatePath;
  await keygen(keyDir, "backup");
  strangerKey = (await keygen(keyDir, "stranger")).privatePath;
  keys = await pin([join(keyDir, "primary.pub.json"), join(keyDir, "backup.pub.json")], 1);
  await writeFile(join(work, "release-keys.json"), JSON.stringify(keys));
  install = await ownerInstall(join(work, "install"), INSTALLED);
  // The next version, built and signed by the release command from a tree whose version says so.
  const nextTree = await ownerInstall(join(work, "next-tree"), NEXT);
  releaseDir = (
    await build({ version: NEXT, keyFiles: [primaryKey], out: join(work, "releases"), source: nextTree, expiresDays: 30, net: [], env: [], nextKeys: null })
  ).dir;
  enrolled = await enrollAgent(database.db, gateway, ownerId);
}, 180_000);

afterAll(async () => {
  await gateway?.stop();
  await mock?.close();
  await pool?.end();
  await database?.drop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function chat(prompt: string): Promise<{ status: number; retryAfter: string | null; body: string }> {
  const res = await fetch(`${gateway.apiOrigin}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: prompt }] }),
  });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), body: await res.text() };
}

describe("signed agent self-update", () => {
  let agent: Proc;
  let dataDir: string;

  it("the release command's output verifies for anyone with the pinned keys; a changed byte does not", async () => {
    const keysFile = join(work, "release-keys.json");
    const verify = startProc(join(ROOT, "node_modules/.bin/tsx"), ["scripts/release.ts", "verify", releaseDir, "--keys", keysFile]);
    expect(await exitOf(verify)).toBe(0);
    expect(verify.lines.join("\n")).toMatch(new RegExp(`release ${NEXT.replaceAll(".", "\\.")} verifies: signed by rk_`));
    const copy = join(work, "tampered-copy");
    await cp(releaseDir, copy, { recursive: true });
    const bundle = await readFile(join(copy, "agent.js"));
    bundle[100] = bundle[100] === 0x20 ? 0x21 : 0x20;
    await writeFile(join(copy, "agent.js"), bundle);
    expect((await verifyDir(copy, keys)).problem).toMatch(/^tampered:/);
  }, 60_000);

  it("an update from N to N+1 under traffic drops no accepted request", async () => {
    dataDir = await freshData();
    agent = launch(dataDir);
    await agent.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
    expect(events(agent, "launcher.boot")[0]).toMatchObject({ version: INSTALLED, source: "install" });
    const status = startProc(join(install, "wellspring-agent"), ["status", "--data", dataDir], { cwd: install });
    expect(await exitOf(status)).toBe(0);
    expect(status.lines.join("\n")).toMatch(
      new RegExp(`version ${INSTALLED.replaceAll(".", "\\.")} \\(installed\\)[\\s\\S]*running: yes[\\s\\S]*connected since`),
    );

    // Streams of ~1 s each, back to back on 4 workers; a 503 is retried after its Retry-After, as SDKs do.
    const results: { status: number; complete: boolean; startedAt: number; endedAt: number; retries: number }[] = [];
    let running = true;
    const worker = async (w: number) => {
      for (let i = 0; running; i++) {
        const startedAt = Date.now();
        let retries = 0;
        for (;;) {
          const r = await chat(`worker ${w} call ${i} [mock chunks=20 delay_ms=50]`);
          if (r.status === 503 && r.retryAfter !== null && running) {
            retries++;
            await new Promise((res) => setTimeout(res, 200));
            continue;
          }
          results.push({ status: r.status, complete: r.body.trimEnd().endsWith("data: [DONE]"), startedAt, endedAt: Date.now(), retries });
          break;
        }
      }
    };
    const workers = [0, 1, 2, 3].map(worker);
    await eventually(() => results.length >= 4, 30_000, "traffic");
    // The operator publishes N+1 and offers it; the hub announces it; the launcher installs it.
    const published = await runAdmin({ db: database.db, pool }, [
      "publish-release",
      "--dir",
      releaseDir,
      "--latest",
      "--keys",
      join(work, "release-keys.json"),
    ]);
    expect(published).toMatch(new RegExp(`release ${NEXT.replaceAll(".", "\\.")} published and offered`));
    await agent.waitForLine(/"event":"launcher\.update_committed"/, 120_000);
    const swappedAt = Date.parse(events(agent, "launcher.update_swapped")[0]!.t as string);
    await new Promise((res) => setTimeout(res, 2_000));
    running = false;
    await Promise.all(workers);

    expect(events(agent, "launcher.boot").at(-1)).toMatchObject({ version: NEXT, source: "release", verified: true });
    expect(results.filter((r) => r.status !== 200)).toEqual([]);
    expect(results.filter((r) => !r.complete)).toEqual([]);
    // Streams that were running when the swap began finished on the old agent, whole.
    expect(results.filter((r) => r.startedAt < swappedAt && r.endedAt > swappedAt).length).toBeGreaterThan(0);
    // Requests that met the gap were told to retry, and then served by N+1.
    const retried = results.filter((r) => r.retries > 0);
    console.log(
      `update under traffic: ${results.length} streams, ${retried.length} met the swap's gap (${retried.reduce((n, r) => n + r.retries, 0)} retries of 503 + Retry-After), none dropped`,
    );
    expect((await agentStatus(dataDir))?.version).toBe(NEXT);
    await eventually(
      async () => (await database.db.agent.findUnique({ where: { id: enrolled.agentId } }))?.version === NEXT,
      10_000,
      "the hub's record of the new version",
    );
  }, 240_000);

  it("tampered, older, expired, unsigned, wrongly signed and oversized releases are refused; the agent keeps its version", async () => {
    const bundle = await readFile(join(releaseDir, "agent.js"));
    const good = JSON.parse(await readFile(join(releaseDir, "manifest.json"), "utf8")) as ReleaseManifest;
    const manifest = (version: string, change: Partial<ReleaseManifest> = {}): ReleaseManifest => ({
      ...good,
      version,
      format: RELEASE_FORMAT,
      protocol: { min: PROTOCOL_VERSION, max: PROTOCOL_VERSION },
      ...change,
    });
    const tampered = Buffer.from(bundle);
    tampered[200] = tampered[200] === 0x20 ? 0x21 : 0x20;
    const cases: { version: string; reason: string; files: () => Promise<{ manifest: string; signatures: string; bundle: Uint8Array }> }[] = [
      { version: v(1, 1), reason: "tampered", files: async () => ({ ...(await signedFiles(manifest(v(1, 1)), primaryKey)), bundle: tampered }) },
      // An old, validly signed release offered again (a downgrade), and one whose manifest says older than offered.
      { version: INSTALLED, reason: "not_newer", files: async () => ({ ...(await signedFiles(manifest(INSTALLED), primaryKey)), bundle }) },
      { version: v(1, 2), reason: "wrong_version", files: async () => ({ ...(await signedFiles(manifest(INSTALLED), primaryKey)), bundle }) },
      {
        version: v(1, 3),
        reason: "expired",
        files: async () => ({ ...(await signedFiles(manifest(v(1, 3), { expiresAt: new Date(Date.now() - 60_000).toISOString() }), primaryKey)), bundle }),
      },
      { version: v(1, 4), reason: "unsigned", files: async () => ({ ...(await signedFiles(manifest(v(1, 4)), null)), bundle }) },
      { version: v(1, 5), reason: "bad_signature", files: async () => ({ ...(await signedFiles(manifest(v(1, 5)), strangerKey)), bundle }) },
      // Larger than any agent accepts, as signed; and larger than signed, as served.
      {
        version: v(1, 6),
        reason: "oversized",
        files: async () => ({ ...(await signedFiles(manifest(v(1, 6), { bundle: { ...good.bundle, bytes: 64 * 1024 * 1024 } }), primaryKey)), bundle }),
      },
      {
        version: v(1, 7),
        reason: "oversized",
        files: async () => ({ ...(await signedFiles(manifest(v(1, 7)), primaryKey)), bundle: Buffer.concat([bundle, Buffer.alloc(4096, 0x20)]) }),
      },
      // Asks for network access the owner never approved.
      {
        version: v(1, 8),
        reason: "permissions",
        files: async () => ({
          ...(await signedFiles(manifest(v(1, 8), { permissions: { net: ["exfiltrate.example.com:443"], env: [] } }), primaryKey)),
          bundle,
        }),
      },
    ];
    for (const c of cases) {
      const before = events(agent, "launcher.update_refused").length;
      if (c.version === INSTALLED)
        await setReleasePolicy(database.db, { latestVersion: c.version }, "test").catch(async () => serveRaw(c.version, await c.files()));
      else await serveRaw(c.version, await c.files());
      const refused = await eventually(
        () =>
          events(agent, "launcher.update_refused")
            .slice(before)
            .find((e) => e.version === c.version),
        30_000,
        `the refusal of ${c.version}`,
      );
      expect(refused.reason, `${c.version}: ${String(refused.error)}`).toBe(c.reason);
      expect(events(agent, "launcher.update_swapped").filter((e) => e.version === c.version)).toEqual([]);
      expect(await agentStatus(dataDir)).toMatchObject({ version: NEXT, connected: true });
    }
    expect(events(agent, "launcher.boot").at(-1)).toMatchObject({ version: NEXT });
    await setReleasePolicy(database.db, { latestVersion: NEXT }, "test");
  }, 240_000);

  it("an agent below the minimum version is refused at the handshake, and its owner's page says why", async () => {
    await agent.stop();
    // An install of N that cannot update itself (no keys pinned), after the hub requires N+1.
    const oldInstall = join(work, "old-install");
    const savedKeys = keys;
    keys = { serial: 1, keys: [] };
    const oldDir = await ownerInstall(oldInstall, INSTALLED);
    keys = savedKeys;
    await setReleasePolicy(database.db, { minimumVersion: NEXT }, "test");
    const old = startProc(join(oldDir, "wellspring-agent"), ["start", "--data", await freshData(), "--dev-upstream", mock.origin], {
      cwd: oldDir,
      env: { TEST_OPENAI_KEY: "k" },
    });
    try {
      await eventually(() => events(old, "launcher.update_required").length > 0, 60_000, "the refusal");
      expect(old.lines.some((l) => l.includes("tunnel.ready"))).toBe(false);
      const row = await database.db.agent.findUniqueOrThrow({ where: { id: enrolled.agentId } });
      expect(row.version).toBe(INSTALLED);
      expect(row.versionRefusedAt).not.toBeNull();
      process.env.DATABASE_URL = database.url;
      const owner = (await import(`${"../../web/lib/data"}/owner.ts`)) as {
        listAgents(a: unknown): Promise<{ id: string; updateRequired: { message: string } | null }[]>;
      };
      const [listed] = await owner.listAgents({ userId: ownerId, email: "o@test", name: null, isOwner: true, isAdmin: false });
      expect(listed!.updateRequired?.message).toMatch(
        new RegExp(`runs version ${INSTALLED.replaceAll(".", "\\.")}.*requires ${NEXT.replaceAll(".", "\\.")} or later`),
      );
    } finally {
      await old.stop();
      await setReleasePolicy(database.db, { minimumVersion: null }, "test");
    }
  }, 120_000);

  it(
    `kill -9 during download or swap always leaves an agent that boots a verified version (${KILL_CYCLES} cycles)`,
    async () => {
      // N+1 is the release offered (published here when this test runs alone).
      if (!(await database.db.agentRelease.findUnique({ where: { version: NEXT } }))) {
        await runAdmin({ db: database.db, pool }, ["publish-release", "--dir", releaseDir, "--keys", join(work, "release-keys.json")]);
      }
      await setReleasePolicy(database.db, { latestVersion: NEXT, minimumVersion: null }, "test");
      // Agents reach the hub through a proxy that slows it to ~256 KiB/s, so a download takes about a second.
      const origin = new URL(gateway.agentOrigin);
      const proxy = await throttledProxy(Number(origin.port), 256 * 1024);
      const phases: Record<string, number> = {};
      const booted: Record<string, number> = {};
      let windowMs = 0;
      let downloadMs = 0;
      try {
        for (let cycle = 0; cycle <= KILL_CYCLES; cycle++) {
          const dir = await freshData(`https://127.0.0.1:${proxy.port}`);
          let proc = launch(dir);
          await proc.waitForLine(/"event":"launcher\.update_started"/, 60_000);
          const startedAt = Date.now();
          if (cycle === 0) {
            // The first cycle measures the update: its download, then the rest (verify, swap, drain, restart, health).
            await proc.waitForLine(/"event":"launcher\.update_downloaded"/, 120_000);
            downloadMs = Date.now() - startedAt;
            await proc.waitForLine(/"event":"launcher\.update_committed"/, 120_000);
            windowMs = Date.now() - startedAt;
          } else {
            // Odd cycles: a random moment of the download; even cycles: of everything after it (the swap).
            if (cycle % 2 === 1) await new Promise((res) => setTimeout(res, Math.random() * downloadMs));
            else {
              await proc.waitForLine(/"event":"launcher\.update_downloaded"/, 120_000);
              await new Promise((res) => setTimeout(res, Math.random() * (windowMs - downloadMs)));
            }
            const last = proc.lines.filter((l) => l.includes('"proc":"launcher"')).at(-1) ?? "";
            const phase = /"event":"launcher\.(\w+)"/.exec(last)?.[1] ?? "unknown";
            phases[phase] = (phases[phase] ?? 0) + 1;
            await proc.stop("SIGKILL");
            // Restarted: it boots a version that verifies, whatever the kill interrupted.
            proc = launch(dir);
            await proc.waitForLine(/"event":"launcher\.boot"/, 60_000);
            const boot = events(proc, "launcher.boot")[0]!;
            booted[String(boot.version)] = (booted[String(boot.version)] ?? 0) + 1;
            if (boot.source === "release") expect((await verifyDir(join(dir, "releases", String(boot.version)), keys)).problem).toBeNull();
            else expect(boot.version).toBe(INSTALLED);
            await proc.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
            // And the update completes.
            await eventually(
              async () => (await agentStatus(dir))?.version === NEXT && (await agentStatus(dir))?.connected,
              120_000,
              `cycle ${cycle}: the update after the restart`,
            ).catch((error: unknown) => {
              throw new Error(`${(error as Error).message} (killed after ${phase}); the restarted launcher said:\n${proc.lines.slice(-40).join("\n")}`);
            });
          }
          expect((await verifyDir(join(dir, "releases", NEXT), keys)).problem).toBeNull();
          expect(await proc.stop()).toBe(0);
          await rm(dir, { recursive: true, force: true });
        }
      } finally {
        await proxy.close();
      }
      console.log(
        `kill -9 cycles: ${KILL_CYCLES}; update ${windowMs} ms (download ${downloadMs} ms); killed after ${JSON.stringify(phases)}; booted right after the kill ${JSON.stringify(booted)}; every boot verified, every update completed`,
      );
    },
    60_000 + KILL_CYCLES * 60_000,
  );
});

/** A TCP proxy to 127.0.0.1:`port` that sends at most `bytesPerSecond` towards the client (the agent). */
async function throttledProxy(port: number, bytesPerSecond: number): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const sliceBytes = Math.max(1, Math.floor(bytesPerSecond / 50));
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    const queue: Buffer[] = [];
    let upstreamDone = false;
    let pumping = false;
    const destroyBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    // Towards the client: slices every 20 ms; what the hub sent before it closed is delivered, then the close.
    const pump = () => {
      if (client.destroyed) return;
      const chunk = queue.shift();
      if (!chunk) {
        pumping = false;
        if (upstreamDone) client.end();
        else upstream.resume();
        return;
      }
      pumping = true;
      client.write(chunk.subarray(0, sliceBytes));
      if (chunk.length > sliceBytes) queue.unshift(chunk.subarray(sliceBytes));
      setTimeout(pump, 20);
    };
    upstream.on("data", (chunk: Buffer) => {
      queue.push(chunk);
      upstream.pause();
      if (!pumping) pump();
    });
    upstream.on("end", () => {
      upstreamDone = true;
      if (!pumping) pump();
    });
    upstream.on("error", () => {
      upstreamDone = true;
      if (!pumping) pump();
    });
    client.on("error", destroyBoth).on("close", destroyBoth);
    client.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
