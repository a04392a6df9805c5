/** The archive store used when no S3 bucket is configured: a local directory, written atomically. */
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseEnv } from "../env.ts";
import { archiveConfigFromEnv } from "./config.ts";
import { checkKey, DirArchiveStore, S3ArchiveStore } from "./store.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe("archive store", () => {
  it("without ARCHIVE_S3_BUCKET the archive goes to DATA_DIR/archive; with it, to S3", () => {
    const local = archiveConfigFromEnv(parseEnv({ DATA_DIR: "/srv/hub" }));
    expect(local.store).toBeInstanceOf(DirArchiveStore);
    expect(local.store.location).toBe("directory /srv/hub/archive");
    expect(local.afterDays).toBe(30);
    const s3 = archiveConfigFromEnv(parseEnv({ ARCHIVE_S3_BUCKET: "hub-archive", ARCHIVE_S3_ENDPOINT: "http://minio:9000", ARCHIVE_S3_PREFIX: "wellspring/" }));
    expect(s3.store).toBeInstanceOf(S3ArchiveStore);
    expect(s3.store.location).toBe("s3://hub-archive/wellspring/ at http://minio:9000");
    expect(() => parseEnv({ ARCHIVE_AFTER_DAYS: "1" })).toThrow(/ARCHIVE_AFTER_DAYS/);
  });

  it("a directory store replaces objects whole, lists them and leaves no temporary file", async () => {
    const root = await mkdtemp(join(tmpdir(), "ws-archive-store-"));
    dirs.push(root);
    const store = new DirArchiveStore(root);
    await store.putBytes("journal_entries/2026/10/01.1.manifest.json", new TextEncoder().encode("first"));
    await store.putBytes("journal_entries/2026/10/01.1.manifest.json", new TextEncoder().encode("second"));
    await store.putBytes("request_records/2026/10/01.1.manifest.json", new TextEncoder().encode("r"));
    expect(new TextDecoder().decode((await store.getBytes("journal_entries/2026/10/01.1.manifest.json"))!)).toBe("second");
    expect(await store.getBytes("journal_entries/2026/10/02.1.manifest.json")).toBeNull();
    expect(await store.list("journal_entries/")).toEqual(["journal_entries/2026/10/01.1.manifest.json"]);
    expect(await readdir(join(root, "journal_entries/2026/10"))).toEqual(["01.1.manifest.json"]);
  });

  it("keys cannot leave the store", () => {
    for (const key of ["../etc/passwd", "a/../../b", "/abs", "a//b", "A/B", "a/./b", ""]) expect(() => checkKey(key), key).toThrow(/Cannot use archive key/);
    expect(checkKey("journal_entries/2026/10/01.1.part0001.jsonl.gz")).toBe("journal_entries/2026/10/01.1.part0001.jsonl.gz");
  });
});
