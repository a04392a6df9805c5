/**
 * File routes in PostgreSQL: only the user whose key uploaded a file reaches it (from memory and, on another
 * gateway, from the table), a deleted one is forgotten, and the user's list is answered from the rows — only
 * theirs, by purpose, in either order, paged with `after`. The upload answer's file object is read bounded.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "../../../e2e/stack/harness.ts";
import { createLogger } from "../log.ts";
import { FILE_OBJECT_SCAN_BYTES_MAX, FileObjectTap, FileRoutes, fileListQuery, ObjectTap, type FileRoute } from "./files.ts";
import { BATCH_OBJECT_BYTES_MAX } from "../api/openai_batches.ts";

let database: TestDatabase;
const log = createLogger({}, "error", () => {});

beforeAll(async () => {
  database = await createTestDatabase();
}, 120_000);

afterAll(async () => {
  await database?.drop();
});

const route = (userId: string, createdAt: number, purpose = "user_data"): FileRoute => ({
  agentId: "agt_a",
  userId,
  model: "gpt-4o-mini",
  purpose,
  bytes: 10,
  createdAt,
});

describe("FileRoutes", () => {
  it("answers the user who uploaded the file, here and on another gateway; any other user and an unknown id get null", async () => {
    const here = new FileRoutes(database.db, log);
    await here.record("file-u1", route("usr_1", 1_700_000_000));
    const elsewhere = new FileRoutes(database.db, log);
    for (const routes of [here, elsewhere]) {
      expect(await routes.routeOf("file-u1", "usr_1")).toEqual(route("usr_1", 1_700_000_000));
      expect(await routes.routeOf("file-u1", "usr_2")).toBeNull();
      expect(await routes.routeOf("file-unknown", "usr_1")).toBeNull();
    }
  });

  it("keeps a batch input file's summary (or why it cannot be batched) for every gateway", async () => {
    const here = new FileRoutes(database.db, log);
    const batchable = {
      batchable: true as const,
      model: "gpt-4o-mini",
      endpoint: "/v1/chat/completions",
      lines: 3,
      worstInputTokens: 3_000_000_000,
      worstOutputTokens: 7,
    };
    await here.record("file-b1", { ...route("usr_1", 1_700_000_010, "batch"), batch: batchable });
    await here.record("file-b2", { ...route("usr_1", 1_700_000_011, "batch"), batch: { batchable: false, problem: "line 2 is not JSON" } });
    const elsewhere = new FileRoutes(database.db, log);
    expect((await elsewhere.routeOf("file-b1", "usr_1"))?.batch).toEqual(batchable);
    expect((await elsewhere.routeOf("file-b2", "usr_1"))?.batch).toEqual({ batchable: false, problem: "line 2 is not JSON" });
  });

  it("a forgotten (deleted) file is reached by no one, on any gateway", async () => {
    const here = new FileRoutes(database.db, log);
    await here.record("file-gone", route("usr_1", 1_700_000_001));
    await here.forget("file-gone");
    expect(await here.routeOf("file-gone", "usr_1")).toBeNull();
    expect(await new FileRoutes(database.db, log).routeOf("file-gone", "usr_1")).toBeNull();
  });

  it("a forgotten file's row is deleted even when the database refuses the first tries (a busy pool)", async () => {
    const here = new FileRoutes(database.db, log);
    await here.record("file-busy", route("usr_1", 1_700_000_002));
    let refusals = 2;
    const busy = {
      fileRoute: {
        deleteMany: (args: { where: { fileId: string } }) =>
          refusals-- > 0 ? Promise.reject(new Error("Timed out fetching a new connection from the connection pool")) : database.db.fileRoute.deleteMany(args),
      },
    } as unknown as ConstructorParameters<typeof FileRoutes>[0];
    await new FileRoutes(busy, log).forget("file-busy", 1);
    expect(refusals).toBe(-1);
    expect(await database.db.fileRoute.count({ where: { fileId: "file-busy" } })).toBe(0);
  });

  it("lists only the user's files, newest first or oldest first, by purpose, paged with after", async () => {
    const routes = new FileRoutes(database.db, log);
    for (let i = 0; i < 5; i++) await routes.record(`file-l${i}`, route("usr_list", 1_700_000_100 + i, i % 2 === 0 ? "user_data" : "batch"));
    await routes.record("file-other", route("usr_other", 1_700_000_200));
    const q = (s: string) => {
      const parsed = fileListQuery(new URLSearchParams(s));
      if ("problem" in parsed) throw new Error(parsed.problem);
      return parsed;
    };
    const all = await routes.list("usr_list", q(""));
    expect(all.data.map((f) => f.id)).toEqual(["file-l4", "file-l3", "file-l2", "file-l1", "file-l0"]);
    expect(all.data[0]).toEqual({
      id: "file-l4",
      object: "file",
      bytes: 10,
      created_at: 1_700_000_104,
      filename: "",
      purpose: "user_data",
      status: "processed",
      expires_at: null,
      status_details: null,
    });
    const first = await routes.list("usr_list", q("limit=2&order=asc"));
    expect(first).toMatchObject({ first_id: "file-l0", last_id: "file-l1", has_more: true });
    const next = await routes.list("usr_list", q("limit=2&order=asc&after=file-l1"));
    expect(next.data.map((f) => f.id)).toEqual(["file-l2", "file-l3"]);
    const last = await routes.list("usr_list", q("limit=2&order=asc&after=file-l3"));
    expect(last).toMatchObject({ first_id: "file-l4", has_more: false });
    expect((await routes.list("usr_list", q("purpose=batch"))).data.map((f) => f.id)).toEqual(["file-l3", "file-l1"]);
    expect((await routes.list("usr_list", q("after=file-other"))).data).toEqual([]);
  });

  it("refuses list parameters outside OpenAI's", () => {
    for (const [s, param] of [
      ["limit=0", "limit"],
      ["limit=10001", "limit"],
      ["limit=ten", "limit"],
      ["order=up", "order"],
      ["after=../x", "after"],
      ["purpose=a%20b", "purpose"],
    ]) {
      expect(fileListQuery(new URLSearchParams(s))).toMatchObject({ param });
    }
    expect(fileListQuery(new URLSearchParams("limit=10000&order=asc&after=file-x&purpose=fine-tune"))).toEqual({
      limit: 10_000,
      order: "asc",
      after: "file-x",
      purpose: "fine-tune",
    });
  });
});

describe("FileObjectTap", () => {
  const enc = (s: string) => new TextEncoder().encode(s);

  it("reads the uploaded file's id, bytes, purpose and created_at from the answer, however it is chunked", () => {
    const text = JSON.stringify({ id: "file-abc", object: "file", bytes: 1234, created_at: 1_700_000_000, filename: "secret.pdf", purpose: "user_data" });
    for (const step of [1, 7, text.length]) {
      const tap = new FileObjectTap();
      for (let i = 0; i < text.length; i += step) tap.push(enc(text.slice(i, i + step)));
      expect(tap.fileObject()).toEqual({ id: "file-abc", bytes: 1234, purpose: "user_data", createdAt: 1_700_000_000 });
    }
  });

  it("reads nothing from an answer that is not a file object, or longer than its bound", () => {
    const read = (s: string) => {
      const tap = new FileObjectTap();
      tap.push(enc(s));
      return tap.fileObject();
    };
    expect(read("not json")).toBeNull();
    expect(read(JSON.stringify({ id: "resp_1", object: "response" }))).toBeNull();
    expect(read(JSON.stringify({ id: "file-../../x" }))).toBeNull();
    expect(read(JSON.stringify({ id: "file-big", pad: "x".repeat(FILE_OBJECT_SCAN_BYTES_MAX) }))).toBeNull();
  });

  it("a tap given a larger bound reads a batch object whose metadata is beyond the file bound", () => {
    // 16 metadata values of 512 escaped non-ASCII characters: ~49 KiB of JSON.
    const pairs = Array.from({ length: 16 }, (_, i) => `"k${i}":"${"\\u00e9".repeat(512)}"`).join(",");
    const text = `{"id":"batch_1","object":"batch","metadata":{${pairs}}}`;
    expect(text.length).toBeGreaterThan(FILE_OBJECT_SCAN_BYTES_MAX);
    const small = new ObjectTap();
    small.push(enc(text));
    expect(small.object()).toBeNull();
    const large = new ObjectTap(BATCH_OBJECT_BYTES_MAX);
    large.push(enc(text));
    expect(large.object()).toMatchObject({ id: "batch_1", object: "batch" });
  });
});
