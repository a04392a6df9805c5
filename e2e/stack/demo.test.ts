/**
 * `npm run demo` does what the README says: prints the two lines, the SDKs work with them (the README's own
 * snippets, run as printed), and the portal it starts takes the printed sign-in and shows the demo user's calls.
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, expect, it } from "vitest";
import { promisify } from "node:util";
import { createTestDatabase, ROOT, startProc, TSX, type Proc, type TestDatabase } from "./harness.ts";
import { readmeBlocks } from "./readme.ts";
import { freePort, signInOverHttp } from "../support/portal_http.ts";

let database: TestDatabase | null = null;
let demo: Proc | null = null;
let dataDir = "";
afterAll(async () => {
  await demo?.stop();
  await database?.drop();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

it("npm run demo prints WELLSPRING_BASE_URL and WELLSPRING_API_KEY that work with both SDKs", async () => {
  database = await createTestDatabase();
  dataDir = await mkdtemp(join(tmpdir(), "ws-demo-"));
  const webPort = await freePort();
  demo = startProc("npm", ["run", "--silent", "demo"], {
    env: { DATABASE_URL: database.url, DATA_DIR: dataDir, GATEWAY_PORT: "0", AGENT_PORT: "0", ADMIN_PORT: "0", WEB_PORT: String(webPort) },
  });
  const base = (await demo.waitForLine(/^WELLSPRING_BASE_URL=(http:\/\/127\.0\.0\.1:\d+)$/, 120_000))[1]!;
  const key = (await demo.waitForLine(/^WELLSPRING_API_KEY=(sk-ws-\w+)$/, 10_000))[1]!;
  const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: key });
  const chat = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] });
  expect(chat.choices[0]!.message.content).toBe("w0 w1 w2 w3 w4 ");
  const emb = await openai.embeddings.create({ model: "text-embedding-3-small", input: "x" });
  expect(emb.data).toHaveLength(1);
  const anthropic = new Anthropic({ baseURL: base, apiKey: key });
  const stream = anthropic.messages.stream({ model: "claude-haiku-4-5", max_tokens: 10, messages: [{ role: "user", content: "hi" }] });
  expect((await stream.finalMessage()).content[0]).toMatchObject({ type: "text", text: "w0 w1 w2 w3 w4 " });

  // The README's SDK snippets, exactly as printed, each print the answer.
  const snippets = (await readmeBlocks()).filter((b) => b.section === "Try it in one command" && b.info === "ts");
  expect(snippets).toHaveLength(2);
  const dir = join(ROOT, "test-results", "readme-snippets");
  await mkdir(dir, { recursive: true });
  for (const [i, snippet] of snippets.entries()) {
    const file = join(dir, `snippet-${i}.ts`);
    await writeFile(file, snippet.text);
    const { stdout } = await promisify(execFile)(TSX, [file], { cwd: ROOT, env: { ...process.env, WELLSPRING_BASE_URL: base, WELLSPRING_API_KEY: key } });
    expect(stdout.trim(), snippet.text).toBe("w0 w1 w2 w3 w4");
  }

  // The portal: the printed sign-in works and the demo user's calls are on its usage page.
  const portal = (await demo.waitForLine(/^Portal: (http:\/\/127\.0\.0\.1:\d+)\/signin$/, 240_000))[1]!;
  const [, email, password] = await demo.waitForLine(/^ {2}sign in as (demo@wellspring\.local) \/ (\S+) /, 5_000);
  const cookie = await signInOverHttp(portal, email!, password!);
  // The sign-in set the portal's device cookie and recorded it (keyed, never as it is) for account links.
  const device = /(?:^|; )ws_device=([A-Za-z0-9_-]{22})(?:;|$)/.exec(cookie)?.[1];
  expect(device).toBeDefined();
  const demoUser = await database.db.user.findUniqueOrThrow({ where: { email: email! } });
  const signals = await database.db.accountSignal.findMany({ where: { userId: demoUser.id, kind: "device" } });
  expect(signals).toHaveLength(1);
  expect(signals[0]!.valueKey).not.toContain(device!);
  await expect
    .poll(async () => (await (await fetch(`${portal}/app/usage`, { headers: { cookie } })).text()).includes("claude-haiku-4-5"), { timeout: 10_000 })
    .toBe(true);
  const ownerLine = await demo.waitForLine(/^ {2}or as (owner@wellspring\.local) \/ (\S+) /, 5_000);
  const ownerCookie = await signInOverHttp(portal, ownerLine[1]!, ownerLine[2]!);
  expect(await (await fetch(`${portal}/app/agents`, { headers: { cookie: ownerCookie } })).text()).toContain("demo-agent");
  // Ctrl-C (SIGINT to the process group) stops it cleanly, without needing SIGKILL.
  const stoppedAt = Date.now();
  const code = await demo.stop("SIGINT");
  expect(Date.now() - stoppedAt).toBeLessThan(12_000);
  expect(demo.child.signalCode).not.toBe("SIGKILL");
  // npm reports a script interrupted by Ctrl-C as 130 (128 + SIGINT), as a shell does.
  expect(code === 0 || code === 130 || demo.child.signalCode === "SIGINT").toBe(true);
}, 360_000);

it("npm run demo -- --gateways 2 starts two gateways sharing the database and a Redis, and prints WELLSPRING_BASE_URLS", async () => {
  const db2 = await createTestDatabase();
  const dir2 = await mkdtemp(join(tmpdir(), "ws-demo-"));
  const env: Record<string, string> = {
    DATABASE_URL: db2.url,
    DATA_DIR: dir2,
    GATEWAY_PORT: "0",
    AGENT_PORT: "0",
    ADMIN_PORT: "0",
    WEB_PORT: String(await freePort()),
  };
  // No REDIS_URL: the demo starts the machine's redis-server for its gateways.
  const proc = startProc("npm", ["run", "--silent", "demo", "--", "--gateways", "2"], { env: { ...env, REDIS_URL: "" } });
  try {
    const urls = (await proc.waitForLine(/^WELLSPRING_BASE_URLS=(\S+)$/, 180_000))[1]!.split(",");
    const key = (await proc.waitForLine(/^WELLSPRING_API_KEY=(sk-ws-\w+)$/, 10_000))[1]!;
    expect(urls).toHaveLength(2);
    expect(new Set(urls).size).toBe(2);
    for (const url of urls) {
      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: key });
      const chat = await openai.chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello" }] });
      expect(chat.choices[0]!.message.content).toBe("w0 w1 w2 w3 w4 ");
      const ready = (await (await fetch(`${url}/readyz`)).json()) as { limits: string };
      expect(ready.limits).toBe("shared");
    }
  } finally {
    await proc.stop();
    await db2.drop();
    await rm(dir2, { recursive: true, force: true });
  }
}, 300_000);
