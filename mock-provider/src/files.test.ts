/**
 * The mock's Files API, driven by the official `openai` client: upload (multipart), list with `limit` / `after` /
 * `purpose`, retrieve, content (the bytes as uploaded) and delete; another mock (provider account) does not know
 * the files; a request naming a file the account does not hold gets OpenAI's 404.
 */
import { createHash, randomBytes } from "node:crypto";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startMockProvider, type MockProvider } from "./mod.ts";

let mock: MockProvider;
let other: MockProvider;
beforeAll(async () => {
  [mock, other] = await Promise.all([startMockProvider(), startMockProvider()]);
});
afterAll(async () => {
  await Promise.all([mock?.close(), other?.close()]);
});

const client = (m: MockProvider) => new OpenAI({ baseURL: `${m.origin}/v1`, apiKey: "sk-x", maxRetries: 0 });
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

it("keeps files as OpenAI's Files API does", async () => {
  const bytes = randomBytes(200_000);
  const a = await client(mock).files.create({ file: await toFile(bytes, "a.bin"), purpose: "user_data" });
  const b = await client(mock).files.create({ file: await toFile(Buffer.from("b"), "b.txt"), purpose: "batch" });
  expect(a).toMatchObject({ object: "file", bytes: bytes.length, filename: "a.bin", purpose: "user_data", status: "processed" });
  expect(sha(new Uint8Array(await (await client(mock).files.content(a.id)).arrayBuffer()))).toBe(sha(bytes));
  expect(await client(mock).files.retrieve(b.id)).toEqual(b);
  const paged: string[] = [];
  for await (const f of client(mock).files.list({ limit: 1 })) paged.push(f.id);
  expect(paged).toEqual([b.id, a.id]);
  const batch: string[] = [];
  for await (const f of client(mock).files.list({ purpose: "batch" })) batch.push(f.id);
  expect(batch).toEqual([b.id]);
  await expect(client(other).files.retrieve(a.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  const chat = client(other).chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: [{ type: "file", file: { file_id: a.id } }] }],
  });
  await expect(chat).rejects.toMatchObject({ status: 404, error: { message: `No such File object: ${a.id}` } });
  const read = await client(mock).chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: [{ type: "file", file: { file_id: a.id } }] }],
  });
  expect(read.choices).toHaveLength(1);
  expect(await client(mock).files.delete(a.id)).toEqual({ id: a.id, object: "file", deleted: true });
  await expect(client(mock).files.content(a.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  await expect(client(mock).files.create({ file: await toFile(Buffer.from("x"), "x"), purpose: "nonsense" as "batch" })).rejects.toMatchObject({ status: 400 });
});
