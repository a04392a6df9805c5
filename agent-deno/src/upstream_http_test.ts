import assert from "node:assert/strict";
import { ResetCode } from "../../protocol/src/mod.ts";
import {
  chunkFrame,
  type Connect,
  connectOrigin,
  requestHead,
  ResponseParser,
  RESPONSE_HEAD_BYTES_MAX,
  splitUrl,
  UpstreamPool,
  UpstreamProtocolError,
} from "./upstream_http.ts";
import { BODY, call, rawServer, selfSigned } from "./testdata/upstream_calls.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Feeds `wire` to a fresh parser in the pieces `cuts` gives (each piece a fresh buffer, as a socket read is); returns head, body, done. */
function parse(wire: Uint8Array, cuts: number[], method = "POST", eof = false) {
  const p = new ResponseParser(method);
  const body: number[] = [];
  let from = 0;
  for (const to of [...cuts, wire.length]) {
    if (to < from) continue;
    const piece = wire.slice(from, to);
    for (const b of p.feed(piece)) body.push(b);
    from = to;
  }
  if (eof) p.eof();
  return { head: p.head, body: dec.decode(new Uint8Array(body)), done: p.done, extra: p.extraBytes };
}

/** Every way of cutting `wire` into two reads, plus one byte per read. */
function everySplit(wire: Uint8Array): number[][] {
  const out: number[][] = [Array.from({ length: wire.length }, (_, i) => i + 1)];
  for (let i = 0; i <= wire.length; i++) out.push([i]);
  return out;
}

Deno.test("parser: content-length body, split at every byte", () => {
  const wire = enc.encode('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a":"b c"}');
  for (const cuts of everySplit(wire)) {
    const r = parse(wire, cuts);
    assert.equal(r.head?.status, 200);
    assert.deepEqual(r.head?.headers, [
      ["content-type", "application/json"],
      ["content-length", "11"],
    ]);
    assert.equal(r.head?.keepAlive, true);
    assert.equal(r.body, '{"a":"b c"}');
    assert.equal(r.done, true);
  }
});

Deno.test("parser: chunked body with extensions and trailers, framing removed, split at every byte", () => {
  const wire = enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-Trailer: yes\r\n\r\n");
  for (const cuts of everySplit(wire)) {
    const r = parse(wire, cuts);
    assert.equal(r.body, "hello 0123456789", `cuts ${cuts}`);
    assert.equal(r.done, true);
    assert.equal(r.head?.keepAlive, true);
    assert.equal(r.extra, 0);
  }
});

Deno.test("parser: one read with several chunks gives one contiguous view of the read buffer", () => {
  const wire = enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n");
  const p = new ResponseParser("POST");
  const body = p.feed(wire);
  assert.equal(dec.decode(body), "abcdef");
  assert.equal(body.buffer, wire.buffer);
  assert.equal(body.byteOffset, 0);
  assert.equal(p.done, false);
});

Deno.test("parser: close-delimited body ends at EOF and the connection is not reused", () => {
  const wire = enc.encode("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it");
  for (const cuts of everySplit(wire)) {
    const r = parse(wire, cuts, "POST", true);
    assert.equal(r.body, "all of it");
    assert.equal(r.done, true);
    assert.equal(r.head?.keepAlive, false);
  }
});

Deno.test("parser: interim 1xx heads are skipped; 204 and HEAD have no body", () => {
  const wire = enc.encode("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  for (const cuts of everySplit(wire)) {
    const r = parse(wire, cuts);
    assert.equal(r.head?.status, 200);
    assert.equal(r.body, "ok");
  }
  const noContent = parse(enc.encode("HTTP/1.1 204 No Content\r\n\r\n"), []);
  assert.equal(noContent.done, true);
  assert.equal(noContent.head?.keepAlive, true);
  const head = parse(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"), [], "HEAD");
  assert.equal(head.done, true);
});

Deno.test("parser: keep-alive is off for Connection: close, HTTP/1.0, and a coding beside a length", () => {
  assert.equal(parse(enc.encode("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n"), []).head?.keepAlive, false);
  assert.equal(parse(enc.encode("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), []).head?.keepAlive, false);
  const both = parse(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"), []);
  assert.equal(both.body, "x");
  assert.equal(both.head?.keepAlive, false);
  // The coding wins and the length is dropped (RFC 9112 6.3): never passed on beside chunked framing.
  assert.deepEqual(both.head?.headers, [["transfer-encoding", "chunked"]]);
});

Deno.test("parser: bytes after a complete response are counted, not returned", () => {
  const r = parse(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200"), []);
  assert.equal(r.body, "ok");
  assert.equal(r.extra, 12);
});

Deno.test("parser: malformed answers are refused", () => {
  const bad = [
    "HTTP/2 200 OK\r\n\r\n",
    "HTTP/1.1 20 OK\r\n\r\n",
    "SMTP ready\r\n\r\n",
    "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "HTTP/1.1 200 OK\r\n folded: value\r\n\r\n",
    "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
    "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
    "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000\r\n",
  ];
  for (const text of bad) {
    const wire = enc.encode(text);
    for (const cuts of everySplit(wire)) assert.throws(() => parse(wire, cuts), UpstreamProtocolError, JSON.stringify(text));
  }
  assert.throws(() => parse(enc.encode("HTTP/1.1 200 OK\r\nX: " + "a".repeat(RESPONSE_HEAD_BYTES_MAX) + "\r\n\r\n"), [100, 40_000]), UpstreamProtocolError);
  // Cut short: inside the head, inside a length body, inside a chunk.
  assert.throws(() => parse(enc.encode("HTTP/1.1 200 OK\r\nContent-Le"), [], "POST", true), /before a response head/);
  assert.throws(() => parse(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"), [], "POST", true), /inside the body/);
  assert.throws(() => parse(enc.encode("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"), [], "POST", true), /inside the body/);
});

Deno.test("request head: the agent's framing, host and credentials win; a CR or LF in a value is refused", () => {
  const { origin, target } = splitUrl("http://127.0.0.1:8080/v1/chat/completions?x=1");
  const head = requestHead(
    "POST",
    origin,
    target,
    [
      ["content-type", "application/json"],
      ["host", "evil.example"],
      ["transfer-encoding", "chunked"],
      ["authorization", "Bearer user"],
      ["x-api-key", "user"],
    ],
    [["authorization", "Bearer owner"]],
    12,
  );
  assert.equal(
    head,
    "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\ncontent-type: application/json\r\nauthorization: Bearer owner\r\ncontent-length: 12\r\n\r\n",
  );
  assert.match(requestHead("POST", origin, target, [], [], null), /transfer-encoding: chunked\r\n\r\n$/);
  assert.throws(() => requestHead("POST", origin, target, [["x-a", "v\r\nhost: evil"]], [], 1), TypeError);
  assert.equal(dec.decode(chunkFrame(enc.encode("0123456789abcdef"))), "10\r\n0123456789abcdef\r\n");
});

// --- against a real socket ---

Deno.test("client: calls reuse one keep-alive connection; the request carries the owner's key and the agent's framing", async () => {
  const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=b\r\n\r\nhello" }));
  const pool = new UpstreamPool();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
    for (let i = 0; i < 3; i++) {
      const r = await call(url, pool, BODY);
      assert.equal(r.outcome, "completed");
      assert.equal(r.status, 200);
      assert.equal(r.body, "hello");
    }
    assert.equal(server.served.connections, 1);
    assert.equal(pool.opened, 1);
    const req = server.served.requests[0]!;
    assert.match(req, /^POST \/v1\/chat\/completions HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\n/);
    assert.match(req, /\r\nauthorization: Bearer sk-test\r\n/);
    assert.match(req, /\r\naccept-encoding: identity\r\n/);
    assert.match(req, new RegExp(`\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY.replace(/[[\]{}]/g, "\\$&")}$`));
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("client: a chunked SSE answer goes on byte-exact, framing removed; Connection: close is not pooled", async () => {
  const events = Array.from({ length: 40 }, (_, i) => `data: {"i":${i},"s":"${"é".repeat(i)}"}\n\n`);
  const chunked = events.map((e) => `${enc.encode(e).length.toString(16)}\r\n${e}\r\n`).join("") + "0\r\n\r\n";
  const server = rawServer(() => ({
    reply: `HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`,
    then: "close",
  }));
  const pool = new UpstreamPool();
  try {
    const r = await call(`http://127.0.0.1:${server.port}/v1/chat/completions`, pool, BODY);
    assert.equal(r.outcome, "completed");
    assert.equal(r.body, events.join(""));
    assert.equal(pool.idleCount(), 0);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("client: a pooled connection the provider closed while idle leaves the pool; the next call opens a new one", async () => {
  const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", then: "close" }));
  const pool = new UpstreamPool();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
    // The server answers with keep-alive but closes right after: the idle read sees the close.
    assert.equal((await call(url, pool, BODY)).body, "ok");
    for (let i = 0; i < 100 && pool.idleCount() > 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(pool.idleCount(), 0);
    assert.equal((await call(url, pool, BODY)).body, "ok");
    assert.equal(server.served.connections, 2);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("client: a reused connection that dies after the request was written is not sent again (UPSTREAM_RESET, one provider call)", async () => {
  // Connection 0 answers its first request, then takes the second and closes without a byte: the provider has
  // the call (it may be working on it, and charging for it), so sending it again would make two calls.
  const server = rawServer((_r, n, conn) =>
    conn === 0 && n === 1 ? { reply: null, then: "close" } : { reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" },
  );
  const pool = new UpstreamPool();
  try {
    const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
    assert.equal((await call(url, pool, BODY)).body, "ok");
    const second = await call(url, pool, BODY);
    assert.equal(second.outcome, "reset");
    assert.equal(second.resetCode, ResetCode.UPSTREAM_RESET);
    assert.equal(server.served.requests.length, 2);
    assert.equal(server.served.connections, 1);
  } finally {
    pool.close();
    server.close();
  }
});

/**
 * A connect function whose connections can be told to fail their next write: `acceptBytes` bytes of it are
 * written (0: none), then the write throws as a socket the peer has reset does.
 */
function faultyConnect(): { connect: Connect; failNextWrite(acceptBytes: number): void } {
  let failing: number | null = null;
  const connect: Connect = async (origin) => {
    const conn = await connectOrigin(origin);
    return new Proxy(conn, {
      get(target, prop) {
        if (prop === "write") {
          return async (bytes: Uint8Array) => {
            if (failing === null) return await target.write(bytes);
            const accept = failing;
            // A partial write is followed by the failing one.
            failing = accept > 0 ? 0 : null;
            if (accept > 0) return await target.write(bytes.subarray(0, Math.min(accept, bytes.length - 1)));
            throw new Deno.errors.BrokenPipe("Broken pipe (os error 32)");
          };
        }
        const value = Reflect.get(target, prop);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  return { connect, failNextWrite: (acceptBytes) => (failing = acceptBytes) };
}

Deno.test("client: a reused connection whose socket took no byte of the request is retried once on a new connection; one that took some is not", async () => {
  const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }));
  const faulty = faultyConnect();
  const pool = new UpstreamPool(faulty.connect);
  try {
    const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
    assert.equal((await call(url, pool, BODY)).body, "ok");
    faulty.failNextWrite(0);
    const retried = await call(url, pool, BODY);
    assert.equal(retried.outcome, "completed");
    assert.equal(retried.body, "ok");
    assert.equal(server.served.connections, 2);
    assert.equal(server.served.requests.length, 2);
    // Now the first write takes 10 bytes of the head and the rest of it fails: the provider may have begun
    // reading the call, so it is not sent again.
    faulty.failNextWrite(10);
    const broken = await call(url, pool, BODY);
    assert.equal(broken.outcome, "reset");
    assert.equal(broken.resetCode, ResetCode.UPSTREAM_RESET);
    assert.equal(server.served.connections, 2);
    assert.equal(pool.opened, 2);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("client: a fresh connection that dies unanswered is not retried (the provider may have the call)", async () => {
  const server = rawServer(() => ({ reply: null, then: "close" }));
  const pool = new UpstreamPool();
  try {
    const r = await call(`http://127.0.0.1:${server.port}/v1/chat/completions`, pool, BODY);
    assert.equal(r.outcome, "reset");
    assert.equal(r.resetCode, ResetCode.UPSTREAM_RESET);
    assert.equal(server.served.requests.length, 1);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test(
  "client: a body that differs from its declared length is refused with PROTOCOL_ERROR, small or streamed, before the provider has a request",
  async () => {
    const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }));
    const pool = new UpstreamPool();
    try {
      const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
      const cases = [
        { name: "small, more than declared", declaredBytes: BODY.length - 5, reason: /longer/ },
        { name: "small, less than declared", declaredBytes: BODY.length + 5, reason: /shorter/ },
        // A window below the body's size: the body is streamed to the provider as it arrives. The piece that
        // runs past the declared length (the third) is refused before any of it is written.
        { name: "streamed, more than declared", declaredBytes: BODY.length - 5, ownWindowBytes: 16, pieceBytes: 12, reason: /longer/ },
        { name: "streamed, less than declared", declaredBytes: BODY.length + 5, ownWindowBytes: 16, pieceBytes: 12, reason: /shorter/ },
      ];
      assert.ok(BODY.length - 5 < 36 && BODY.length > 24, "the pieces of 12 bytes cross the declared length in the third");
      for (const { name, reason, ...opts } of cases) {
        const r = await call(url, pool, BODY, opts);
        assert.equal(r.outcome, "reset", name);
        assert.equal(r.resetCode, ResetCode.PROTOCOL_ERROR, name);
        assert.match(r.resetReason ?? "", reason, name);
        assert.equal(r.status, null, name);
      }
      // The provider never read a whole request (a streamed body's connection was closed inside it).
      for (let i = 0; i < 100 && server.served.closedByClient < server.served.connections; i++) await new Promise((r) => setTimeout(r, 5));
      assert.equal(server.served.requests.length, 0);
      // The same body with its true length goes through both ways.
      assert.equal((await call(url, pool, BODY)).body, "ok");
      assert.equal((await call(url, pool, BODY, { ownWindowBytes: 16, pieceBytes: 12 })).body, "ok");
    } finally {
      pool.close();
      server.close();
    }
  },
);

Deno.test("client: a provider answer with both Transfer-Encoding: chunked and Content-Length is read as chunked, and the length is not passed on", async () => {
  const events = ['data: {"a":1}\n\n', 'data: {"b":2}\n\n', "data: [DONE]\n\n"];
  const chunked = events.map((e) => `${e.length.toString(16)}\r\n${e}\r\n`).join("") + "0\r\n\r\n";
  const server = rawServer(() => ({
    // The length names the framed bytes, not the body: passed on, it would make the gateway cut the answer.
    reply: `HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: ${chunked.length}\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}`,
  }));
  const pool = new UpstreamPool();
  try {
    const r = await call(`http://127.0.0.1:${server.port}/v1/chat/completions`, pool, BODY);
    assert.equal(r.outcome, "completed");
    assert.equal(r.body, events.join(""));
    const names = (r.responseHeaders ?? []).map(([n]) => n);
    assert.deepEqual(names, ["content-type"]);
    // The connection is not reused after such an answer (RFC 9112 6.3).
    assert.equal(pool.idleCount(), 0);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("client: a reset from the hub closes the provider connection", async () => {
  // Head sent, body never ends: the stream is cancelled while the provider is still sending.
  const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n" }));
  const pool = new UpstreamPool();
  try {
    const r = await call(`http://127.0.0.1:${server.port}/v1/chat/completions`, pool, BODY, {
      onStarted: (s) => {
        const wait = () => (server.served.requests.length > 0 ? setTimeout(() => s.onReset("user went away"), 20) : setTimeout(wait, 5));
        wait();
      },
    });
    assert.equal(r.outcome, "cancelled");
    for (let i = 0; i < 200 && server.served.closedByClient === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(server.served.closedByClient, 1);
    assert.equal(pool.idleCount(), 0);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("pool: every new connection goes through the one connect function", async () => {
  const server = rawServer(() => ({ reply: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", then: "close" }));
  const seen: string[] = [];
  const connect: Connect = (origin) => {
    seen.push(origin.key);
    return connectOrigin(origin);
  };
  const pool = new UpstreamPool(connect);
  try {
    const url = `http://127.0.0.1:${server.port}/v1/chat/completions`;
    await call(url, pool, BODY);
    await call(url, pool, BODY);
    assert.deepEqual(seen, [`http://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.port}`]);
    const refusing = new UpstreamPool(() => Promise.reject(new Error("address not allowed")));
    const r = await call(url, refusing, BODY);
    assert.equal(r.outcome, "reset");
    // No byte of the call left the agent: the hub may send it to another agent.
    assert.equal(r.resetCode, ResetCode.UPSTREAM_UNREACHABLE);
  } finally {
    pool.close();
    server.close();
  }
});

Deno.test("client over TLS: keep-alive reuse, the idle read, and a chunked answer byte-exact", async () => {
  const { cert, key } = await selfSigned("IP:127.0.0.1");
  const events = Array.from({ length: 30 }, (_, i) => `data: {"i":${i}}\n\n`);
  const chunked = events.map((e) => `${e.length.toString(16)}\r\n${e}\r\n`).join("") + "0\r\n\r\n";
  const server = rawServer(
    () => ({ reply: `HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n${chunked}` }),
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }),
  );
  // The pool's one connect function, here trusting the test certificate (production: the system roots).
  const pool = new UpstreamPool((origin) => Deno.connectTls({ hostname: origin.hostname, port: origin.port, caCerts: [cert] }));
  try {
    const url = `https://127.0.0.1:${server.port}/v1/chat/completions`;
    for (let i = 0; i < 3; i++) {
      const r = await call(url, pool, BODY);
      assert.equal(r.outcome, "completed");
      assert.equal(r.body, events.join(""));
    }
    assert.equal(server.served.connections, 1);
    assert.equal(pool.idleCount(), 1);
  } finally {
    pool.close();
    server.close();
  }
});
