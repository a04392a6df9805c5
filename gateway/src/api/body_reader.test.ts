import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { BodyReader } from "./body_reader.ts";

/** A server whose one request is read by a BodyReader; resolves with the chunks read, or the read's error. */
function readOne(idleMs: number): { server: Server; result: Promise<{ chunks: Buffer[]; error: Error | null }>; port: Promise<number> } {
  let done!: (r: { chunks: Buffer[]; error: Error | null }) => void;
  const result = new Promise<{ chunks: Buffer[]; error: Error | null }>((r) => (done = r));
  const server = createServer((req: IncomingMessage, res) => {
    void (async () => {
      const reader = new BodyReader(req, idleMs, () => new Error("stalled"));
      const chunks: Buffer[] = [];
      try {
        for (;;) {
          const next = await reader.next();
          if (next.done) break;
          chunks.push(next.value);
        }
        done({ chunks, error: null });
        res.end("ok");
      } catch (error) {
        done({ chunks, error: error as Error });
        res.destroy();
      }
    })();
  });
  const port = new Promise<number>((r) => server.listen(0, "127.0.0.1", () => r((server.address() as AddressInfo).port)));
  return { server, result, port };
}

/** A POST to the server that declares `length` bytes and sends `sent` of them (errors ignored: the tests cut it). */
async function partialPost(port: Promise<number>, length: number, sent: string) {
  const req = request({ port: await port, method: "POST", headers: { "content-length": length } });
  req.on("error", () => undefined);
  req.write(sent);
  return req;
}

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

describe("BodyReader", () => {
  it("reads a whole body that came with its head, then ends", async () => {
    const { server, result, port } = readOne(5_000);
    servers.push(server);
    const body = JSON.stringify({ model: "m", input: "x".repeat(3000) });
    const req = request({ port: await port, method: "POST", headers: { "content-length": Buffer.byteLength(body) } });
    req.on("error", () => undefined);
    req.end(body);
    const { chunks, error } = await result;
    expect(error).toBeNull();
    expect(Buffer.concat(chunks).toString()).toBe(body);
  });

  it("waits for bytes that come later, in order, and for the end of a chunked body", async () => {
    const { server, result, port } = readOne(5_000);
    servers.push(server);
    const req = request({ port: await port, method: "POST", headers: { "transfer-encoding": "chunked" } });
    req.on("error", () => undefined);
    req.write("first ");
    await new Promise((r) => setTimeout(r, 50));
    req.write("second ");
    await new Promise((r) => setTimeout(r, 50));
    req.end("third");
    const { chunks, error } = await result;
    expect(error).toBeNull();
    expect(Buffer.concat(chunks).toString()).toBe("first second third");
    expect(chunks.length).toBeGreaterThanOrEqual(2);
  });

  it("fails a read when no byte arrives within the idle limit", async () => {
    const { server, result, port } = readOne(100);
    servers.push(server);
    const req = await partialPost(port, 100, "only ten b");
    const { chunks, error } = await result;
    expect(error?.message).toBe("stalled");
    expect(Buffer.concat(chunks).toString()).toBe("only ten b");
    req.destroy();
  });

  it("never reads a body the client cut off as complete", async () => {
    const { server, result, port } = readOne(5_000);
    servers.push(server);
    const req = await partialPost(port, 100, "partial");
    await new Promise((r) => setTimeout(r, 50));
    req.destroy();
    const { chunks, error } = await result;
    expect(error).not.toBeNull();
    expect(Buffer.concat(chunks).toString()).toBe("partial");
  });
});
