import assert from "node:assert/strict";
import { ResetCode } from "../../protocol/src/mod.ts";
import type { ByteConn } from "./dialer.ts";
import { type Connect, connectOrigin, originConnector, READ_BUFFER_BYTES, UpstreamPool } from "./upstream_http.ts";
import { AGENT_WORKERS_MAX, parseAgentWorkers, UpstreamWorkers } from "./upstream_workers.ts";
import { BODY, call, rawServer } from "./testdata/upstream_calls.ts";

/** Counts the bytes this thread took from the provider's connections (a Worker's reads are only the ones asked for). */
function counting(connect: Connect): { connect: Connect; read: () => number } {
  let read = 0;
  return {
    read: () => read,
    connect: async (origin) => {
      const c = await connect(origin);
      const counted: ByteConn = {
        read: async (p) => {
          const n = await c.read(p);
          if (n !== null) read += n;
          return n;
        },
        write: (p) => c.write(p),
        close: () => c.close(),
      };
      return counted;
    },
  };
}

/** A provider that answers one request with `totalBytes` of body, writing as fast as the socket takes it. */
function floodingServer(totalBytes: number) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const state = { written: 0, closed: false };
  (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(65536);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const piece = new Uint8Array(65536).fill(0x78);
    try {
      await conn.write(new TextEncoder().encode(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${totalBytes}\r\n\r\n`));
      while (state.written < totalBytes) state.written += await conn.write(piece.subarray(0, Math.min(piece.length, totalBytes - state.written)));
    } catch {
      state.closed = true;
    }
  })().catch(() => {});
  return { port: (listener.addr as Deno.NetAddr).port, state, close: () => listener.close() };
}

for (const mode of ["this thread", "an upstream Worker"] as const) {
  Deno.test(
    `workers (${mode}): a client that grants no credit stops the provider read at its window plus one read buffer; a reset then closes the provider's connection`,
    async () => {
      const TOTAL = 16 << 20;
      const WINDOW = 64 * 1024;
      const server = floodingServer(TOTAL);
      const workers = mode === "an upstream Worker" ? new UpstreamWorkers(2) : null;
      await workers?.ready();
      const counted = counting(workers ? originConnector({ proxy: null }, workers.dialer) : connectOrigin);
      const pool = new UpstreamPool(counted.connect);
      try {
        let readWhileStalled = -1;
        let writtenWhileStalled = -1;
        const r = await call(`http://127.0.0.1:${server.port}/v1/chat/completions`, pool, BODY, {
          peerWindowBytes: WINDOW,
          onStarted: (s) => {
            const stalled = () => {
              // Long enough for a provider left unchecked to send far more than the window.
              readWhileStalled = counted.read();
              writtenWhileStalled = server.state.written;
              s.onReset("the test saw the stall");
            };
            const wait = () => (counted.read() >= WINDOW ? setTimeout(stalled, 400) : setTimeout(wait, 5));
            wait();
          },
        });
        assert.equal(r.outcome, "cancelled");
        assert.ok(readWhileStalled >= WINDOW, `read ${readWhileStalled}`);
        assert.ok(readWhileStalled <= WINDOW + READ_BUFFER_BYTES + 1024, `the agent read ${readWhileStalled} bytes with a window of ${WINDOW}`);
        assert.ok(writtenWhileStalled < TOTAL, "the provider was held back by its socket");
        // The RESET closed the provider's connection: its next write fails.
        for (let i = 0; i < 400 && !server.state.closed; i++) await new Promise((r) => setTimeout(r, 5));
        assert.equal(server.state.closed, true);
        assert.equal(pool.idleCount(), 0);
      } finally {
        pool.close();
        workers?.close();
        server.close();
      }
    },
  );
}

Deno.test("workers: new connections go to the Worker holding the fewest; a refused connect keeps its error's name and adds none", async () => {
  const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }));
  const workers = new UpstreamWorkers(3);
  await workers.ready();
  const pool = new UpstreamPool(originConnector({ proxy: null }, workers.dialer));
  try {
    const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
    const results = await Promise.all(Array.from({ length: 4 }, () => call(url, pool, BODY)));
    for (const r of results) assert.equal(r.body, "ok");
    assert.deepEqual(workers.openPerWorker, [2, 2], "four connections at once: two in each Worker");
    pool.close();
    assert.deepEqual(workers.openPerWorker, [0, 0]);
    // Nothing listens there: the Worker's connect fails, the stream says the provider is unreachable.
    const unreachable = await call("http://127.0.0.1:1/v1/chat/completions", pool, BODY);
    assert.equal(unreachable.resetCode, ResetCode.UPSTREAM_UNREACHABLE);
    assert.deepEqual(workers.openPerWorker, [0, 0]);
  } finally {
    pool.close();
    workers.close();
    server.close();
  }
});

Deno.test("workers: --workers / AGENT_WORKERS is a whole number from 1 to AGENT_WORKERS_MAX", () => {
  assert.equal(parseAgentWorkers(undefined), 1);
  assert.equal(parseAgentWorkers(""), 1);
  assert.equal(parseAgentWorkers("2"), 2);
  assert.equal(parseAgentWorkers(String(AGENT_WORKERS_MAX)), AGENT_WORKERS_MAX);
  for (const bad of ["0", "-1", "1.5", "2x", " 2", String(AGENT_WORKERS_MAX + 1), "1e1"]) assert.throws(() => parseAgentWorkers(bad), RangeError, bad);
});

Deno.test("workers: a Worker that dies is reported (the agent then stops for the launcher to restart it) and its calls fail", async () => {
  const stopped: string[] = [];
  const workers = new UpstreamWorkers(2, (e) => stopped.push(e.message), "throw new Error('boom')");
  try {
    await assert.rejects(workers.ready(), /upstream worker stopped/);
    assert.equal(stopped.length, 1);
    await assert.rejects(workers.dialer.tcp("127.0.0.1", 1), /upstream worker stopped/);
  } finally {
    workers.close();
  }
});

Deno.test(
  "workers: the Worker starts and serves under the agent's permissions (read only a data folder), from source and from the release's kind of bundle",
  async () => {
    const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }));
    const data = await Deno.makeTempDir({ prefix: "ws-workers-data-" });
    const scratch = await Deno.makeTempDir({ prefix: "ws-workers-bundle-" });
    try {
      const script = new URL("./testdata/workers_narrow.ts", import.meta.url).pathname;
      // As scripts/release.ts bundles the agent: one file, packages inside.
      const bundle = `${scratch}/agent.js`;
      const built = await new Deno.Command(Deno.execPath(), {
        args: ["bundle", "--quiet", "--platform", "deno", "--packages", "bundle", "-o", bundle, script],
        cwd: new URL("..", import.meta.url).pathname,
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(built.code, 0, new TextDecoder().decode(built.stderr));
      for (const entry of [script, bundle]) {
        // The agent's serve permissions (src/permissions.ts): --allow-read names its data folder only.
        const run = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--no-prompt",
            `--allow-read=${data}`,
            `--allow-net=127.0.0.1:${server.port}`,
            entry,
            `http://127.0.0.1:${server.port}/v1/chat/completions`,
          ],
          stdout: "piped",
          stderr: "piped",
        }).output();
        const err = new TextDecoder().decode(run.stderr);
        assert.equal(run.code, 0, `${entry}: ${err}`);
        assert.deepEqual(JSON.parse(new TextDecoder().decode(run.stdout)), { outcome: "completed", body: "ok", openPerWorker: [1] }, entry);
      }
      assert.equal(server.served.requests.length, 2);
    } finally {
      server.close();
      await Deno.remove(data, { recursive: true });
      await Deno.remove(scratch, { recursive: true });
    }
  },
);
