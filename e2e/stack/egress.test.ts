/**
 * Egress and IP risk, through real processes: a gateway and stock agents of three owners. Each agent, once its
 * tunnel is ready, is probed: it calls the hub's echo endpoint through the client its provider calls use and
 * reports the address the echo saw. An agent with no proxy leaves from its tunnel's address: nothing is raised.
 * Agents whose provider-call client goes through a proxy (HTTPS_PROXY) that dials out from 127.0.0.2 — another
 * address on Linux's loopback — are flagged `egress_mismatch` (tunnel 127.0.0.1, egress 127.0.0.2); with the
 * hub allowing one owner per egress address, the second owner behind that proxy is flagged `shared_egress`.
 * The three agents hold the same provider keys (the harness's test keys): each owner after the first is flagged
 * `key_fingerprint_reuse` when its agent reports its key fingerprints.
 */
import { Buffer } from "node:buffer";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "@wellspring/db";
import { startMockProvider, type MockProvider } from "@wellspring/mock-provider";
import { KEY_FINGERPRINT_REUSE, type KeyReuseEvidence } from "../../gateway/src/risk/key_reuse.ts";
import { EGRESS_MISMATCH, SHARED_EGRESS, type EgressMismatchEvidence, type SharedEgressEvidence } from "../../gateway/src/risk/egress.ts";
import { startConnectProxy, type ConnectProxy } from "./connect_proxy.ts";
import {
  adminFetch,
  AGENT_LAUNCHER,
  createTestDatabase,
  enrollAgent,
  ROOT,
  startAgentLauncher,
  startGatewayProc,
  startProc,
  waitFor,
  type GatewayProc,
  type Proc,
  type TestDatabase,
} from "./harness.ts";

/** Where the proxy's connections leave from: a loopback address other than the tunnel's 127.0.0.1. */
const PROXY_EGRESS = "127.0.0.2";
/** The password in the first proxied agent's HTTPS_PROXY: it must reach the proxy and appear in no output. */
const PROXY_PASSWORD = "pr0xy-s3cret";
/** The hub's limit in this test: one owner per egress address, so a second owner behind the proxy is over it. */
const OWNERS_PER_ADDRESS_MAX = 1;

let database: TestDatabase;
let mock: MockProvider;
let gateway: GatewayProc;
let proxy: ConnectProxy;
const procs: Proc[] = [];
/** Owners and agents in the order they were started. */
const started: { ownerId: string; agentId: string }[] = [];
const dirs: string[] = [];

/** Enrolls an agent for a new owner and starts it (with HTTPS_PROXY when given); resolves once it is ready. */
async function startOwnerAgent(httpsProxy: string | null): Promise<{ ownerId: string; agentId: string; dataDir: string; proc: Proc }> {
  const ownerId = newId("usr");
  await database.db.user.create({ data: { id: ownerId, email: `${ownerId}@owner.test`, isOwner: true } });
  const { dataDir, agentId } = await enrollAgent(database.db, gateway, ownerId);
  dirs.push(dataDir);
  const proc = startAgentLauncher(dataDir, { devUpstream: mock.origin, env: httpsProxy ? { HTTPS_PROXY: httpsProxy } : {} });
  procs.push(proc);
  await proc.waitForLine(/WELLSPRING_AGENT_READY/, 60_000);
  started.push({ ownerId, agentId });
  return { ownerId, agentId, dataDir, proc };
}

/** The agent's probe once it answered: what the hub recorded (read, never written, by the test). */
async function answeredProbe(agentId: string): Promise<{ tunnel: string; echo: string | null; reported: string | null }> {
  let row: { tunnel_address: string; echo_address: string | null; reported_address: string | null } | undefined;
  await waitFor(async () => {
    [row] = await database.db.$queryRaw<{ tunnel_address: string; echo_address: string | null; reported_address: string | null }[]>`
      SELECT tunnel_address, echo_address, reported_address FROM egress_probes WHERE agent_id = ${agentId} AND answered_at IS NOT NULL`;
    return row !== undefined;
  }, 15_000);
  return { tunnel: row!.tunnel_address, echo: row!.echo_address, reported: row!.reported_address };
}

interface FlagRow {
  kind: string;
  subject: string;
  evidence: Record<string, unknown>;
}

async function flags(kind: string): Promise<FlagRow[]> {
  const res = await adminFetch(gateway.adminOrigin, "/admin/v1/risk-flags");
  return ((await res.json()) as { data: FlagRow[] }).data.filter((f) => f.kind === kind);
}

beforeAll(async () => {
  database = await createTestDatabase();
  mock = await startMockProvider();
  gateway = await startGatewayProc(database.url, { EGRESS_OWNERS_PER_ADDRESS_MAX: String(OWNERS_PER_ADDRESS_MAX) });
  proxy = await startConnectProxy(PROXY_EGRESS);
}, 60_000);

afterAll(async () => {
  for (const p of procs) await p.stop();
  await proxy?.close();
  await gateway?.stop();
  await mock?.close();
  await database?.drop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("egress probes", () => {
  it("an agent whose provider calls leave from its tunnel's address raises nothing", async () => {
    const { agentId } = await startOwnerAgent(null);
    expect(await answeredProbe(agentId)).toEqual({ tunnel: "127.0.0.1", echo: "127.0.0.1", reported: "127.0.0.1" });
    expect(await flags(EGRESS_MISMATCH)).toEqual([]);
    expect(await flags(SHARED_EGRESS)).toEqual([]);
  });

  it("an agent whose provider-call client goes through a proxy is flagged with the three addresses", async () => {
    // Credentials in the proxy URL, as a corporate proxy wants them: sent to the proxy, shown nowhere.
    const proxyAddress = new URL(proxy.url).host;
    const { agentId, dataDir, proc } = await startOwnerAgent(`http://owner:${PROXY_PASSWORD}@${proxyAddress}`);
    expect(await answeredProbe(agentId)).toEqual({ tunnel: "127.0.0.1", echo: PROXY_EGRESS, reported: PROXY_EGRESS });
    // The proxy carried the echo call to the hub's agent listener (CONNECT by the hub's name), with the credentials.
    expect(proxy.tunnels).toContain(new URL(gateway.agentOrigin).host);
    expect(proxy.authorizations.at(-1)).toBe(`Basic ${Buffer.from(`owner:${PROXY_PASSWORD}`).toString("base64")}`);
    // The launcher granted the proxy's address and the one proxy variable set; the status says which proxy is used.
    const permissions = proc.lines.find((l) => l.includes('"launcher.permissions"'))!;
    expect(permissions).toContain(`,${proxyAddress}"`);
    expect(permissions).toMatch(/--allow-env=[^"]*HTTPS_PROXY"/);
    const status = startProc(AGENT_LAUNCHER, ["status", "--data", dataDir], { cwd: join(ROOT, "agent-deno") });
    await status.waitForLine(/^provider calls: /, 30_000);
    await status.stop();
    expect(status.lines).toContain(`provider calls: through proxy ${proxyAddress} (HTTPS_PROXY; NO_PROXY hosts go direct)`);
    expect([...proc.lines, ...status.lines].some((l) => l.includes(PROXY_PASSWORD))).toBe(false);
    await waitFor(async () => (await flags(EGRESS_MISMATCH)).length === 1, 10_000);
    const [flag] = await flags(EGRESS_MISMATCH);
    expect(flag!.subject).toBe(`agent:${agentId}`);
    expect(flag!.evidence as EgressMismatchEvidence).toMatchObject({
      agentId,
      tunnelAddress: "127.0.0.1",
      echoAddress: PROXY_EGRESS,
      reportedAddress: PROXY_EGRESS,
      problems: ["echo_differs_from_tunnel"],
    });
    // One owner behind the proxy is within the limit.
    expect(await flags(SHARED_EGRESS)).toEqual([]);
  });

  it("a second owner behind the same egress address is over the limit and flagged; the first is not", async () => {
    const first = (await flags(EGRESS_MISMATCH))[0]!.evidence as EgressMismatchEvidence;
    const { ownerId, agentId } = await startOwnerAgent(proxy.url);
    await answeredProbe(agentId);
    await waitFor(async () => (await flags(SHARED_EGRESS)).length === 1, 10_000);
    const [flag] = await flags(SHARED_EGRESS);
    expect(flag!.subject).toBe(`user:${ownerId}`);
    const evidence = flag!.evidence as SharedEgressEvidence;
    expect(evidence.address).toBe(PROXY_EGRESS);
    expect(evidence.ownerCount).toBe(2);
    expect(evidence.ownersPerAddressMax).toBe(OWNERS_PER_ADDRESS_MAX);
    expect(evidence.owners).toHaveLength(2);
    expect(evidence.owners[1]).toBe(ownerId);
    expect(first.agentId).not.toBe(agentId);
  });

  it("the same provider key behind agents of several owners is flagged on each owner after the first", async () => {
    await waitFor(async () => (await flags(KEY_FINGERPRINT_REUSE)).length === started.length - 1, 10_000);
    const raised = await flags(KEY_FINGERPRINT_REUSE);
    expect(raised.map((f) => f.subject).sort()).toEqual(
      started
        .slice(1)
        .map((s) => `user:${s.ownerId}`)
        .sort(),
    );
    const last = raised.find((f) => f.subject === `user:${started.at(-1)!.ownerId}`)!.evidence as KeyReuseEvidence;
    expect(last.crossOwner).toBe(true);
    expect(last.agentId).toBe(started.at(-1)!.agentId);
    expect(last.others.map((o) => o.agentId)).toEqual(started.slice(0, -1).map((s) => s.agentId));
    // Fingerprints only: never a key.
    expect(last.fingerprints.length).toBeGreaterThan(0);
    expect(last.fingerprints.every((f) => /^kfp_[0-9a-f]{32}$/.test(f))).toBe(true);
    expect(JSON.stringify(raised)).not.toContain("sk-");
  });
});
