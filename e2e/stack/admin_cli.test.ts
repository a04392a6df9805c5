/**
 * The operator's money commands as an operator runs them (`npm run admin -- …`, a separate process):
 * grant, balance, redemption codes, and the ledger audit, which exits 1 when the books are altered; and
 * create-admin at a real terminal (a pseudo-terminal from `script`), which never shows the password.
 */
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, ROOT, TSX, type TestDatabase } from "./harness.ts";

const run = promisify(execFile);
let database: TestDatabase;
let dataDir: string;
beforeAll(async () => {
  database = await createTestDatabase();
  dataDir = await mkdtemp(join(tmpdir(), "ws-admin-"));
}, 60_000);
afterAll(async () => {
  await database?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

async function admin(...args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(TSX, ["gateway/src/cli/admin.ts", ...args], { cwd: ROOT, env: { ...process.env, DATABASE_URL: database.url, DATA_DIR: dataDir } });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, out: e.stdout + e.stderr };
  }
}

it("grant, balance, codes and audit work from the command line; an altered wallet fails the audit", async () => {
  expect((await admin("create-user", "--email", "buyer@example.test")).code).toBe(0);
  const granted = await admin("grant", "--email", "buyer@example.test", "--micros", "2500000", "--reason", "welcome");
  expect(granted).toEqual({ code: 0, out: expect.stringContaining("granted $2.50") });
  expect((await admin("grant", "--email", "buyer@example.test", "--micros", "2.5", "--reason", "x")).code).toBe(1);
  expect((await admin("balance", "--email", "buyer@example.test")).out).toContain("available $2.50, reserved $0.00");
  const codes = await admin("redemption-codes", "--micros", "1000000", "--count", "3");
  expect(codes.out.match(/WSR(-[A-Z2-9]{4}){4}/g)).toHaveLength(3);
  const ok = await admin("audit");
  expect(ok).toEqual({ code: 0, out: expect.stringContaining("ledger audit ok") });

  // Someone edits a balance behind the ledger's back: the audit names the wallet and exits 1.
  await database.db.$executeRawUnsafe("UPDATE wallets SET available_micros = available_micros + 1");
  const failed = await admin("audit");
  expect(failed.code).toBe(1);
  expect(failed.out).toMatch(/ledger audit FAILED[\s\S]*wallet usr_\S+: available \+ reserved 2500001 ≠ journal 2500000/);
}, 90_000);

it("create-admin at a terminal asks for the password twice and never shows it", async () => {
  const password = "tty password 0123";
  // `script` gives the command a pseudo-terminal, with echo on as in a terminal window; what the terminal shows is its stdout.
  const child = spawn("script", ["-qfec", `${TSX} gateway/src/cli/admin.ts create-admin --email tty-admin@example.test`, "/dev/null"], {
    cwd: ROOT,
    env: { ...process.env, DATABASE_URL: database.url, DATA_DIR: dataDir },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let shown = "";
  child.stdout.on("data", (d: Buffer) => (shown += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const until = async (text: string) => {
    for (const deadline = Date.now() + 30_000; !shown.includes(text); await new Promise((r) => setTimeout(r, 50))) {
      if (Date.now() > deadline) throw new Error(`the terminal never showed "${text}":\n${shown}`);
    }
  };
  await until("not shown");
  child.stdin.write(`${password}\r`);
  await until("Same password again");
  child.stdin.write(`${password}\r`);
  expect(await exited).toBe(0);
  expect(shown).toMatch(/administrator usr_\w+ tty-admin@example\.test/);
  expect(shown).not.toContain(password);
  expect(shown).not.toContain("tty pass");
  const user = await database.db.user.findUniqueOrThrow({ where: { email: "tty-admin@example.test" } });
  expect(user.isAdmin).toBe(true);
}, 60_000);
