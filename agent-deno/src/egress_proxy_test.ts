import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { ResetCode } from "../../protocol/src/mod.ts";
import {
  bypassesProxy,
  openProxyTunnel,
  parseNoProxy,
  parseProxySettings,
  PROXY_ANSWER_HEAD_BYTES_MAX,
  ProxyConfigError,
  ProxyError,
  proxyEnvSet,
  proxyFromEnv,
} from "./egress_proxy.ts";
import { runEgressProbe } from "./egress_probe.ts";
import { originConnector, UpstreamPool } from "./upstream_http.ts";
import { BODY, call, rawServer, selfSigned } from "./testdata/upstream_calls.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** What the test proxy saw: each CONNECT's target and its Proxy-Authorization (null: none), and every head as sent. */
interface ProxySeen {
  connects: string[];
  authorizations: (string | null)[];
  heads: string[];
}

/**
 * A CONNECT proxy on loopback, as a corporate proxy is: it resolves the target NAME itself (here from `routes`,
 * name:port → local port), may demand credentials (407 without them), or may misbehave (`mode`).
 */
function connectProxy(
  routes: Record<string, number>,
  opts: { requireAuthorization?: string; mode?: "silent" | "huge-head" | "pipe" } = {},
): { url: string; port: number; seen: ProxySeen; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const seen: ProxySeen = { connects: [], authorizations: [], heads: [] };
  const open = new Set<Deno.Conn>();
  const closeAll = (...conns: Deno.Conn[]) => {
    for (const c of conns) {
      open.delete(c);
      try {
        c.close();
      } catch {
        /* closed */
      }
    }
  };
  const pump = async (from: Deno.Conn, to: Deno.Conn) => {
    const buf = new Uint8Array(16384);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        let off = 0;
        while (off < n) off += await to.write(buf.subarray(off, n));
      }
    } catch {
      /* one side closed */
    }
    closeAll(from, to);
  };
  (async () => {
    for await (const client of listener) {
      open.add(client);
      (async () => {
        let text = "";
        const buf = new Uint8Array(4096);
        while (!text.includes("\r\n\r\n")) {
          const n = await client.read(buf).catch(() => null);
          if (n === null) return closeAll(client);
          text += dec.decode(buf.subarray(0, n));
        }
        seen.heads.push(text);
        const target = /^CONNECT (\S+) HTTP\/1\.1\r\n/.exec(text)?.[1] ?? "";
        seen.connects.push(target);
        const authorization = /\r\nproxy-authorization: ([^\r]*)\r\n/i.exec(text)?.[1] ?? null;
        seen.authorizations.push(authorization);
        if (opts.mode === "silent") return; // never answers
        if (opts.mode === "huge-head") {
          await client.write(enc.encode(`HTTP/1.1 200 OK\r\nx-pad: ${"a".repeat(PROXY_ANSWER_HEAD_BYTES_MAX)}\r\n\r\n`)).catch(() => {});
          return closeAll(client);
        }
        if (opts.requireAuthorization && authorization !== opts.requireAuthorization) {
          await client.write(enc.encode("HTTP/1.1 407 Proxy Authentication Required\r\nproxy-authenticate: Basic\r\ncontent-length: 0\r\n\r\n"));
          return closeAll(client);
        }
        const port = routes[target];
        if (port === undefined) {
          await client.write(enc.encode("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"));
          return closeAll(client);
        }
        const upstream = await Deno.connect({ hostname: "127.0.0.1", port });
        open.add(upstream);
        await client.write(enc.encode("HTTP/1.1 200 Connection Established\r\n\r\n"));
        void pump(client, upstream);
        void pump(upstream, client);
      })().catch(() => closeAll(client));
    }
  })().catch(() => {});
  const port = (listener.addr as Deno.NetAddr).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close() {
      try {
        listener.close();
      } catch {
        /* closed before */
      }
      closeAll(...open);
    },
  };
}

const ANSWER = JSON.stringify({ id: "chatcmpl-1", choices: [] });
const okServer = (request: string) => ({
  reply: `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${ANSWER.length}\r\nx-host-seen: ${/\r\nhost: ([^\r]*)/.exec(request)?.[1]}\r\n\r\n${ANSWER}`,
});

Deno.test("proxy settings: HTTPS_PROXY before https_proxy, http:// only, credentials kept out of the address", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  assert.equal(proxyFromEnv(env({})), null);
  assert.equal(proxyFromEnv(env({ NO_PROXY: "example.com" })), null);
  const p = proxyFromEnv(env({ HTTPS_PROXY: "http://us%40er:p%3Ass@proxy.corp:3128", https_proxy: "http://other:1", no_proxy: "a.test" }))!;
  assert.equal(p.address, "proxy.corp:3128");
  assert.equal(p.hostname, "proxy.corp");
  assert.equal(p.port, 3128);
  assert.equal(p.authorization, `Basic ${Buffer.from("us@er:p:ss").toString("base64")}`);
  assert.equal(bypassesProxy(p.noProxy, "a.test", 443), true);
  assert.deepEqual(proxyEnvSet(env({ HTTPS_PROXY: "x", no_proxy: "y", NO_PROXY: " " })), ["HTTPS_PROXY", "no_proxy"]);
  assert.equal(proxyFromEnv(env({ https_proxy: "proxy.corp:8080" }))!.address, "proxy.corp:8080");
  assert.equal(parseProxySettings("HTTPS_PROXY", "http://proxy.corp", "").address, "proxy.corp:80");
  assert.equal(parseProxySettings("HTTPS_PROXY", "http://[::1]:3128", "").address, "[::1]:3128");
  assert.equal(parseProxySettings("HTTPS_PROXY", "http://proxy.corp:3128", "").authorization, null);
  assert.throws(() => parseProxySettings("HTTPS_PROXY", "https://proxy.corp:443", ""), ProxyConfigError);
  assert.throws(() => parseProxySettings("HTTPS_PROXY", "socks5://proxy.corp:1080", ""), ProxyConfigError);
  assert.throws(() => parseProxySettings("HTTPS_PROXY", "http://", ""), ProxyConfigError);
});

Deno.test("NO_PROXY: *, host and its subdomains, .suffix and *.suffix, host:port, IP literals", () => {
  const rules = parseNoProxy("localhost, .internal.corp,*.azure.test ,api.openai.com:8443,10.0.0.7,[::1]");
  const cases: [string, number, boolean][] = [
    ["localhost", 443, true],
    ["LOCALHOST", 443, true],
    ["x.internal.corp", 443, true],
    ["internal.corp", 443, false],
    ["contoso.azure.test", 443, true],
    ["azure.test", 443, false],
    ["api.openai.com", 443, false],
    ["api.openai.com", 8443, true],
    ["notlocalhost", 443, false],
    ["10.0.0.7", 443, true],
    ["10.0.0.70", 443, false],
    ["::1", 443, true],
    ["api.anthropic.com", 443, false],
  ];
  for (const [host, port, direct] of cases) assert.equal(bypassesProxy(rules, host, port), direct, `${host}:${port}`);
  assert.equal(bypassesProxy(parseNoProxy("*"), "api.anthropic.com", 443), true);
  assert.equal(bypassesProxy(parseNoProxy("example.com"), "api.example.com", 443), true);
  assert.equal(bypassesProxy(parseNoProxy(""), "example.com", 443), false);
});

Deno.test("through HTTPS_PROXY: the provider call asks CONNECT for the official name, TLS is checked against that name, keep-alive holds", async () => {
  const { cert, key } = await selfSigned("DNS:api.provider.test");
  const server = rawServer(okServer, Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }));
  // The proxy sends both names to the same server, whose certificate is for api.provider.test only.
  const proxy = connectProxy({ "api.provider.test:443": server.port, "relay.provider.test:443": server.port });
  const pool = new UpstreamPool(originConnector({ proxy: parseProxySettings("HTTPS_PROXY", proxy.url, ""), caCerts: [cert] }));
  try {
    for (let i = 0; i < 2; i++) {
      const r = await call("https://api.provider.test/v1/chat/completions", pool, BODY);
      assert.equal(r.outcome, "completed");
      assert.equal(r.status, 200);
      assert.equal(r.body, ANSWER);
      // The request arrived inside the tunnel with the official name.
      assert.deepEqual(
        r.responseHeaders!.find(([n]) => n === "x-host-seen"),
        ["x-host-seen", "api.provider.test"],
      );
    }
    // One tunnel, by name, reused for the second call; the proxy never saw the owner's key or the body.
    assert.deepEqual(proxy.seen.connects, ["api.provider.test:443"]);
    assert.equal(server.served.connections, 1);
    assert.ok(server.served.requests.every((r) => r.includes("authorization: Bearer sk-test")));
    assert.ok(proxy.seen.heads.every((h) => !h.includes("sk-test") && !h.includes("gpt-4o-mini")));
    // A name the certificate does not cover fails the TLS check inside the tunnel: no byte of the call is sent.
    const relayed = await call("https://relay.provider.test/v1/chat/completions", pool, BODY);
    assert.equal(relayed.outcome, "reset");
    assert.equal(relayed.resetCode, ResetCode.UPSTREAM_UNREACHABLE);
    assert.deepEqual(proxy.seen.connects, ["api.provider.test:443", "relay.provider.test:443"]);
    assert.equal(server.served.requests.length, 2);
  } finally {
    pool.close();
    proxy.close();
    server.close();
  }
});

Deno.test("NO_PROXY: an exempt https origin goes direct; plain-http development origins never use the proxy", async () => {
  const { cert, key } = await selfSigned("IP:127.0.0.1");
  const tlsServer = rawServer(okServer, Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }));
  const plainServer = rawServer(okServer);
  const proxy = connectProxy({});
  const pool = new UpstreamPool(originConnector({ proxy: parseProxySettings("HTTPS_PROXY", proxy.url, "localhost,127.0.0.1"), caCerts: [cert] }));
  try {
    assert.equal((await call(`https://127.0.0.1:${tlsServer.port}/v1/chat/completions`, pool, BODY)).outcome, "completed");
    assert.equal((await call(`http://127.0.0.1:${plainServer.port}/v1/chat/completions`, pool, BODY)).outcome, "completed");
    assert.deepEqual(proxy.seen.connects, []);
    assert.equal(tlsServer.served.connections, 1);
    assert.equal(plainServer.served.connections, 1);
  } finally {
    pool.close();
    proxy.close();
    tlsServer.close();
    plainServer.close();
  }
});

Deno.test("proxy credentials: sent as Proxy-Authorization; a 407 is a clear error naming the proxy's status, never the credentials", async () => {
  const { cert, key } = await selfSigned("DNS:api.provider.test");
  const server = rawServer(okServer, Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }));
  const expected = `Basic ${Buffer.from("owner:s3cret-pw").toString("base64")}`;
  const proxy = connectProxy({ "api.provider.test:443": server.port }, { requireAuthorization: expected });
  const withUrl = (userinfo: string) => parseProxySettings("HTTPS_PROXY", `http://${userinfo}127.0.0.1:${proxy.port}`, "");
  const good = new UpstreamPool(originConnector({ proxy: withUrl("owner:s3cret-pw@"), caCerts: [cert] }));
  try {
    assert.equal((await call("https://api.provider.test/v1/chat/completions", good, BODY)).outcome, "completed");
    assert.deepEqual(proxy.seen.authorizations, [expected]);
    for (const userinfo of ["owner:wr0ng-pw@", ""]) {
      const settings = withUrl(userinfo);
      const error = await openProxyTunnel(settings, "api.provider.test", 443).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(error instanceof ProxyError);
      assert.match(error.message, new RegExp(`^Proxy 127\\.0\\.0\\.1:${proxy.port} refused CONNECT to api\\.provider\\.test:443: it answered 407 `));
      for (const secret of ["wr0ng-pw", "owner", Buffer.from("owner:wr0ng-pw").toString("base64")]) assert.ok(!error.message.includes(secret));
      // Through a provider call: nothing reached the provider, so the hub may try another agent.
      const r = await call("https://api.provider.test/v1/chat/completions", new UpstreamPool(originConnector({ proxy: settings, caCerts: [cert] })), BODY);
      assert.equal(r.resetCode, ResetCode.UPSTREAM_UNREACHABLE);
    }
    assert.equal(server.served.requests.length, 1);
  } finally {
    good.close();
    proxy.close();
    server.close();
  }
});

Deno.test("proxy answers are bounded: a silent proxy times out, an oversized head is refused, an absent proxy is named", async () => {
  const silent = connectProxy({}, { mode: "silent" });
  const huge = connectProxy({}, { mode: "huge-head" });
  try {
    const started = performance.now();
    await assert.rejects(openProxyTunnel(parseProxySettings("HTTPS_PROXY", silent.url, ""), "api.provider.test", 443, 200), (e: Error) => {
      assert.ok(e instanceof ProxyError);
      assert.match(e.message, /did not answer CONNECT to api\.provider\.test:443 within 200 ms/);
      return true;
    });
    assert.ok(performance.now() - started < 2_000);
    await assert.rejects(openProxyTunnel(parseProxySettings("HTTPS_PROXY", huge.url, ""), "api.provider.test", 443), /head over 16384 bytes/);
    const closedPort = huge.port;
    huge.close();
    await assert.rejects(
      openProxyTunnel(parseProxySettings("HTTPS_PROXY", `http://127.0.0.1:${closedPort}`, ""), "x.test", 443),
      /^ProxyError: Cannot reach proxy/,
    );
  } finally {
    silent.close();
    huge.close();
  }
});

Deno.test("egress probe: the echo call goes through the same connect function (CONNECT by name), trusting the hub's certificate", async () => {
  const { cert, key } = await selfSigned("DNS:hub.provider.test");
  const echo = rawServer(
    (request) => {
      const nonce = /nonce=([^ &]*)/.exec(request)?.[1];
      const body = JSON.stringify({ address: "127.0.0.2" });
      return { reply: `HTTP/1.1 ${nonce === "n0nce" ? 200 : 400} OK\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`, then: "close" };
    },
    Deno.listenTls({ hostname: "127.0.0.1", port: 0, cert, key }),
  );
  const proxy = connectProxy({ "hub.provider.test:8788": echo.port });
  const settings = parseProxySettings("HTTPS_PROXY", proxy.url, "");
  try {
    const ok = await runEgressProbe("https://hub.provider.test:8788", cert, "n0nce", originConnector({ proxy: settings, caCerts: [cert] }));
    assert.deepEqual(ok, { answer: { nonce: "n0nce", address: "127.0.0.2" }, error: null });
    assert.deepEqual(proxy.seen.connects, ["hub.provider.test:8788"]);
    // Another certificate than the hub's is not trusted for the echo.
    const other = await selfSigned("DNS:hub.provider.test");
    const refused = await runEgressProbe("https://hub.provider.test:8788", other.cert, "n0nce", originConnector({ proxy: settings, caCerts: [other.cert] }));
    assert.equal(refused.answer.address, null);
    assert.ok(refused.error);
    const silent = connectProxy({}, { mode: "silent" });
    const started = performance.now();
    try {
      const timedOut = await runEgressProbe(
        "https://hub.provider.test:8788",
        cert,
        "n0nce",
        originConnector({ proxy: parseProxySettings("HTTPS_PROXY", silent.url, ""), caCerts: [cert] }),
        300,
      );
      assert.deepEqual(timedOut, { answer: { nonce: "n0nce", address: null }, error: "no echo answer within 300 ms" });
      assert.ok(performance.now() - started < 2_000);
    } finally {
      silent.close();
    }
  } finally {
    proxy.close();
    echo.close();
  }
});
