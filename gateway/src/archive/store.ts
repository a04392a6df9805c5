/**
 * Where archived days go: an S3-compatible bucket (the AWS SDK v3 client; any endpoint that speaks S3 — AWS,
 * MinIO, Ceph, R2 — with path-style addressing), or a local directory when no endpoint is configured. Objects
 * are written whole and never modified in place: a directory write goes to a temporary file, is fsync'd and
 * renamed over the key, so a crash leaves either the old object or the new one.
 */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";

/** An S3 call gives up after these times (each of up to S3_ATTEMPTS_MAX attempts), ms. */
export const S3_CONNECT_TIMEOUT_MS = 10_000;
export const S3_REQUEST_TIMEOUT_MS = 300_000;
export const S3_ATTEMPTS_MAX = 3;

export interface ArchiveStore {
  /** Where the objects go, for logs and the operator (never a credential). */
  readonly location: string;
  /** Stores the local file `path` (`bytes` long) under `key`, replacing any object there. */
  putFile(key: string, path: string, bytes: number): Promise<void>;
  putBytes(key: string, body: Uint8Array): Promise<void>;
  /** The object's bytes as a stream, or null when there is none. */
  get(key: string): Promise<Readable | null>;
  getBytes(key: string): Promise<Uint8Array | null>;
  /** Keys under `prefix`, sorted. */
  list(prefix: string): Promise<string[]>;
}

/** Keys are relative paths of lower-case letters, digits and `._-/`; nothing that could climb out of a directory. */
export function checkKey(key: string): string {
  if (!/^[a-z0-9_][a-z0-9_./-]*$/.test(key) || key.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new Error(`Cannot use archive key ${JSON.stringify(key)}`);
  }
  return key;
}

async function streamToBytes(stream: Readable): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface S3StoreOptions {
  endpoint: string | null;
  region: string;
  bucket: string;
  /** Key prefix inside the bucket ("" for none). */
  prefix: string;
  /** Static credentials; null uses the SDK's default chain (AWS_ACCESS_KEY_ID, instance roles, …). */
  credentials: { accessKeyId: string; secretAccessKey: string } | null;
  /** Path-style addressing (`endpoint/bucket/key`), which S3-compatible servers need. */
  forcePathStyle: boolean;
}

export class S3ArchiveStore implements ArchiveStore {
  readonly #client: S3Client;
  readonly location: string;

  constructor(private readonly o: S3StoreOptions) {
    this.#client = new S3Client({
      region: o.region,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      forcePathStyle: o.forcePathStyle,
      ...(o.credentials ? { credentials: o.credentials } : {}),
      maxAttempts: S3_ATTEMPTS_MAX,
      // Plain PUT bodies with a Content-Length: S3-compatible servers that do not speak the SDK's default
      // aws-chunked uploads with trailing checksums would store the chunk framing. Integrity is checked by
      // reading every object back and comparing SHA-256 (archiver.ts).
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      requestHandler: { connectionTimeout: S3_CONNECT_TIMEOUT_MS, requestTimeout: S3_REQUEST_TIMEOUT_MS },
    });
    this.location = `s3://${o.bucket}/${o.prefix}${o.endpoint ? ` at ${new URL(o.endpoint).origin}` : ""}`;
  }

  #key(key: string): string {
    return `${this.o.prefix}${checkKey(key)}`;
  }

  async putFile(key: string, path: string, bytes: number): Promise<void> {
    await this.#client.send(new PutObjectCommand({ Bucket: this.o.bucket, Key: this.#key(key), Body: createReadStream(path), ContentLength: bytes }));
  }

  async putBytes(key: string, body: Uint8Array): Promise<void> {
    await this.#client.send(new PutObjectCommand({ Bucket: this.o.bucket, Key: this.#key(key), Body: body, ContentLength: body.length }));
  }

  async get(key: string): Promise<Readable | null> {
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.#key(key) }));
      return (out.Body as Readable | undefined) ?? null;
    } catch (error) {
      if (error instanceof NoSuchKey || (error as { name?: string }).name === "NoSuchKey") return null;
      throw error;
    }
  }

  async getBytes(key: string): Promise<Uint8Array | null> {
    const stream = await this.get(key);
    return stream ? streamToBytes(stream) : null;
  }

  async list(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const out = await this.#client.send(new ListObjectsV2Command({ Bucket: this.o.bucket, Prefix: `${this.o.prefix}${prefix}`, ContinuationToken: token }));
      for (const o of out.Contents ?? []) if (o.Key) keys.push(o.Key.slice(this.o.prefix.length));
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }
}

export class DirArchiveStore implements ArchiveStore {
  readonly location: string;

  constructor(private readonly root: string) {
    this.location = `directory ${root}`;
  }

  #path(key: string): string {
    return join(this.root, ...checkKey(key).split("/"));
  }

  async #replace(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
    try {
      await write(tmp);
      const fh = await open(tmp, "r");
      await fh.sync();
      await fh.close();
      await rename(tmp, path);
      const dir = await open(dirname(path), "r");
      await dir.sync();
      await dir.close();
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async putFile(key: string, path: string): Promise<void> {
    await this.#replace(this.#path(key), (tmp) => pipeline(createReadStream(path), createWriteStream(tmp)));
  }

  async putBytes(key: string, body: Uint8Array): Promise<void> {
    await this.#replace(this.#path(key), async (tmp) => {
      const fh = await open(tmp, "w");
      await fh.writeFile(body);
      await fh.close();
    });
  }

  async get(key: string): Promise<Readable | null> {
    const path = this.#path(key);
    try {
      await stat(path);
    } catch {
      return null;
    }
    return createReadStream(path);
  }

  async getBytes(key: string): Promise<Uint8Array | null> {
    const stream = await this.get(key);
    return stream ? streamToBytes(stream) : null;
  }

  async list(prefix: string): Promise<string[]> {
    const out: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) await walk(full);
        else if (!e.name.includes(".tmp-")) out.push(relative(this.root, full).split(sep).join("/"));
      }
    };
    await walk(this.root);
    return out.filter((k) => k.startsWith(prefix)).sort();
  }
}
