/**
 * The README's first hour, as a new user runs it: a fresh copy of the repository (its tracked files only, no
 * build, no data), the Quick start's `npm install && npm start`, then the "First steps" block in a second
 * terminal, as written (only the API port differs, so the test does not take a port a developer's hub uses).
 * The API answers while the portal is still being built; the portal comes up; SIGTERM to the `npm start`
 * process stops Node, Next.js and PostgreSQL, leaving no process of the copy behind.
 */
import { execFile, spawn } from "node:child_process";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, it } from "vitest";
import { ROOT, startProc, type Proc } from "./harness.ts";
import { readmeBlocks } from "./readme.ts";
import { freePort } from "../support/portal_http.ts";

const run = promisify(execFile);
let copy = "";
let hub: Proc | null = null;

afterAll(async () => {
  await hub?.stop("SIGKILL");
  if (copy) await rm(copy, { recursive: true, force: true });
});

/** Processes whose command line names `dir` (the copy's node, tsx, next and postgres processes). */
async function processesIn(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir("/proc")).filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = (await readFile(`/proc/${pid}/cmdline`, "utf8")).replaceAll("\0", " ");
      if (cmd.includes(dir)) found.push(`${pid} ${cmd}`);
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

it("a fresh copy: npm install && npm start, the README's first steps beside it, then SIGTERM stops everything", async () => {
  copy = await mkdtemp(join(tmpdir(), "ws-readme-"));
  // A checkout is readable by others (mkdtemp makes 0700): as root, the embedded PostgreSQL runs as `postgres`.
  await chmod(copy, 0o755);
  // The repository's tracked (and new, not ignored) files: what a clone of this tree holds.
  await run("sh", ["-c", `git ls-files -z -co --exclude-standard | tar --null -T - -cf - | tar -xf - -C '${copy}'`], { cwd: ROOT });
  // The packages npm would download, linked from this checkout's install (the machine may be offline); the
  // README's `npm install` then runs for real: it checks them against the lockfile and runs the postinstall.
  await run("cp", ["-al", join(ROOT, "node_modules"), join(copy, "node_modules")]);
  const install = await run("npm", ["install"], { cwd: copy, env: { ...process.env, npm_config_audit: "false", npm_config_fund: "false" } });
  // The one engine warning the README explains, and no other.
  const engineWarnings = (install.stdout + install.stderr).split("\n").filter((l) => /EBADENGINE\s+package:/.test(l));
  expect(engineWarnings.map((l) => /package: '([^']+)'/.exec(l)?.[1])).toEqual(["@prisma/streams-local@0.1.11"]);
  expect(await readFile(join(copy, "package-lock.json"), "utf8")).toBe(await readFile(join(ROOT, "package-lock.json"), "utf8"));

  const [api, agent, admin, web] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const ports = {
    GATEWAY_PORT: String(api),
    AGENT_PORT: String(agent),
    ADMIN_PORT: String(admin),
    WEB_PORT: String(web),
    DATABASE_URL: "",
    REDIS_URL: "",
    DATA_DIR: "",
  };
  // `npm start` in its own process group, as in a terminal; only the npm process gets the SIGTERM below.
  hub = startProc("npm", ["start"], { cwd: copy, env: ports });
  await hub.waitForLine(/^Wellspring hub is running:/, 120_000);
  const apiOrigin = `http://127.0.0.1:${api}`;
  // The API answers while the portal is still being built (no build in a fresh copy).
  expect((await fetch(`${apiOrigin}/v1/models`)).status).toBe(401);
  const building = await fetch(`http://127.0.0.1:${web}/`);
  expect(building.status).toBe(503);
  expect(await building.text()).toContain("The portal is being built");
  // The start log names the first-run link, kept in DATA_DIR/admin-setup-url too.
  const setupUrl = (await hub.waitForLine(/^ {2}(http:\/\/127\.0\.0\.1:\d+\/setup\?token=wss_\w+)$/, 5_000))[1]!;
  expect((await readFile(join(copy, ".data/admin-setup-url"), "utf8")).trim()).toBe(setupUrl);

  // The README's "First steps" block, as written, in a second terminal (bash, stopping at the first failure).
  const block = (await readmeBlocks()).find((b) => b.section === "First steps from a terminal, beside `npm start`" && b.info === "sh");
  expect(block).toBeDefined();
  const script = join(copy, "first-steps.sh");
  await writeFile(script, `set -euo pipefail\n${block!.text.replaceAll("127.0.0.1:8787", `127.0.0.1:${api}`)}\n`);
  const env = { ...process.env, ...ports };
  delete (env as Record<string, string | undefined>).WELLSPRING_API_KEY;
  const steps = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn("bash", [script], { cwd: copy, env, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => resolve({ code, out }));
  });
  expect(steps.code, steps.out).toBe(0);
  expect(steps.out).toMatch(/user usr_\w+ alice@example\.com/);
  expect(steps.out).toContain("granted $20.00 to alice@example.com");
  expect(steps.out).toContain('{"object":"list","data":[]');
  expect(steps.out).toContain("alice@example.com: available $20.00, reserved $0.00");
  expect(steps.out.match(/WSR(-[A-Z2-9]{4}){4}/g)).toHaveLength(3);
  expect(steps.out).toMatch(new RegExp(`\\./wellspring-agent enroll --hub https://127\\.0\\.0\\.1:${agent} --pin sha256/\\S+ --token wse_\\w+`));
  expect(steps.out).toContain("ledger audit ok");

  // The portal comes up once built.
  const hubExited = new Promise<never>((_, reject) =>
    hub!.child.once("exit", (code) => reject(new Error(`npm start exited (${code}):\n${hub!.lines.slice(-40).join("\n")}`))),
  );
  await Promise.race([
    hubExited,
    expect.poll(async () => (await fetch(`http://127.0.0.1:${web}/signin`).catch(() => null))?.status, { timeout: 300_000, interval: 1_000 }).toBe(200),
  ]);

  // SIGTERM to the `npm start` process alone (as a service manager sends it): everything of the copy stops.
  hubExited.catch(() => undefined);
  const stoppedAt = Date.now();
  process.kill(hub.child.pid!, "SIGTERM");
  await new Promise((resolve) => (hub!.child.exitCode !== null ? resolve(null) : hub!.child.once("exit", resolve)));
  await expect.poll(() => processesIn(copy), { timeout: 15_000 }).toEqual([]);
  expect(Date.now() - stoppedAt).toBeLessThan(15_000);
  expect(hub.lines.join("\n")).not.toMatch(/"level":"(warn|error)"/);
}, 600_000);
