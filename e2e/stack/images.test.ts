/**
 * The container images, checked as far as this machine can (no container engine runs here, and no base image
 * can be pulled): each Dockerfile is multi-stage, runs as a non-root user, copies only paths that exist in the
 * build context, and has a health check; the gateway image's command and health check, run as written from the
 * repository root (the image's /app) with the image's environment, start a gateway that is ready. (The agent
 * image's command and health check run in agent_production.test.ts; the portal's command, `tsx web/server.ts`,
 * is what `npm start` runs in the browser tests.)
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createTestDatabase, ROOT, startProc, type Proc, type TestDatabase } from "./harness.ts";

interface Stage {
  from: string;
  workdir: string;
  user: string | null;
  env: Record<string, string>;
  copies: string[];
  cmd: string[];
  healthcheck: string[];
}

/** The stages of a Dockerfile (continuation lines joined). */
async function stages(file: string): Promise<Stage[]> {
  const text = (await readFile(join(ROOT, "docker", file), "utf8")).replace(/\\\n\s*/g, " ");
  const out: Stage[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const [instruction, ...rest] = line.split(/\s+/);
    const args = rest.join(" ");
    if (instruction === "FROM") {
      out.push({ from: args, workdir: "/", user: null, env: {}, copies: [], cmd: [], healthcheck: [] });
      continue;
    }
    const s = out.at(-1)!;
    if (instruction === "WORKDIR") s.workdir = args.startsWith("/") ? args : join(s.workdir, args);
    if (instruction === "USER") s.user = args;
    if (instruction === "ENV") for (const m of args.matchAll(/(\w+)=(\S+)/g)) s.env[m[1]!] = m[2]!;
    if (instruction === "COPY" && !rest[0]!.startsWith("--from=")) s.copies.push(...rest.slice(0, -1));
    if (instruction === "CMD") s.cmd = JSON.parse(args) as string[];
    if (instruction === "HEALTHCHECK") s.healthcheck = JSON.parse(/CMD (\[.*\])$/.exec(args)![1]!) as string[];
  }
  return out;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function exitOf(proc: Proc): Promise<number | null> {
  if (proc.child.exitCode !== null) return proc.child.exitCode;
  return new Promise((r) => proc.child.once("exit", (code) => r(code)));
}

let database: TestDatabase | null = null;
let gateway: Proc | null = null;
let dataDir: string | null = null;
afterAll(async () => {
  await gateway?.stop();
  await database?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

describe("container images", () => {
  for (const file of ["gateway.Dockerfile", "web.Dockerfile", "agent.Dockerfile"]) {
    it(`${file}: multi-stage, non-root, copies what exists, checks its health`, async () => {
      const s = await stages(file);
      expect(s.length).toBeGreaterThanOrEqual(2);
      const final = s.at(-1)!;
      expect(final.user).toMatch(/^(?!root$|0$)\w+$/);
      expect(final.cmd.length).toBeGreaterThan(0);
      expect(final.healthcheck.length).toBeGreaterThan(0);
      for (const stage of s) for (const src of stage.copies) expect(existsSync(join(ROOT, src)), `${file}: COPY ${src}`).toBe(true);
    });
  }

  it("the gateway image's command and health check, run as written, serve a ready gateway", async () => {
    const final = (await stages("gateway.Dockerfile")).at(-1)!;
    expect(final.workdir).toBe("/app");
    database = await createTestDatabase();
    dataDir = await mkdtemp(join(tmpdir(), "ws-image-gw-"));
    const ports = { GATEWAY_PORT: String(await freePort()), AGENT_PORT: String(await freePort()), ADMIN_PORT: String(await freePort()) };
    // The image's environment, with the volume's path (/data) replaced by a temporary folder.
    const env = { ...final.env, DATA_DIR: dataDir, DATABASE_URL: database.url, HUB_ID: "hub_image_test", ...ports };
    const [cmd, ...args] = final.cmd;
    // A path runs from the image's working folder (the checkout here); a bare name (`node`) from the PATH, as in the image.
    gateway = startProc(cmd!.includes("/") ? join(ROOT, cmd!) : cmd!, args, { cwd: ROOT, env });
    await gateway.waitForLine(/WELLSPRING_GATEWAY_READY/, 60_000);
    const [hc, ...hcArgs] = final.healthcheck;
    expect(hc).toBe("node");
    const health = startProc(hc!, hcArgs, { cwd: ROOT, env });
    expect(await exitOf(health)).toBe(0);
    // Bound as the image binds (every interface), the admin listener included: the compose file publishes it on loopback.
    expect((await fetch(`http://127.0.0.1:${ports.ADMIN_PORT}/metrics`)).status).toBe(200);
  }, 120_000);
});
