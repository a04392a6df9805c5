/** `npm run demo` does what the README says: prints the two lines, and the SDKs work with them. */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI from "openai";
import { afterAll, expect, it } from "vitest";
import { createTestDatabase, startProc, type Proc, type TestDatabase } from "./harness.ts";

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
  demo = startProc("npm", ["run", "--silent", "demo"], { env: { DATABASE_URL: database.url, DATA_DIR: dataDir, GATEWAY_PORT: "0", AGENT_PORT: "0", ADMIN_PORT: "0" } });
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
  // Ctrl-C (SIGINT to the process group) stops it cleanly, without needing SIGKILL.
  const stoppedAt = Date.now();
  const code = await demo.stop("SIGINT");
  expect(Date.now() - stoppedAt).toBeLessThan(12_000);
  expect(demo.child.signalCode).not.toBe("SIGKILL");
  expect(code === 0 || demo.child.signalCode === "SIGINT").toBe(true);
}, 180_000);
