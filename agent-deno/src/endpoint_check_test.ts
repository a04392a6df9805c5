import assert from "node:assert/strict";
import {
  ENDPOINT_REPORT_INTERVAL_MS,
  EndpointGuard,
  EndpointReportThrottle,
  parseAddress,
  parseDevResolve,
  ProviderNetworks,
  staticResolver,
} from "./endpoint_check.ts";
import { PROVIDER_NETWORKS } from "./provider_networks_data.ts";

const networks = new ProviderNetworks();

Deno.test("endpoint check: the generated table holds each provider's published addresses and not others", () => {
  // api.anthropic.com (AS399358), a Cloudflare edge address (AS13335, OpenAI's API), an Azure front end (AS8075).
  assert.equal(networks.contains("anthropic", "160.79.104.10"), true);
  assert.equal(networks.contains("openai", "104.18.6.192"), true);
  assert.equal(networks.contains("openai", "2606:4700::6812:6c0"), true);
  assert.equal(networks.contains("azure", "20.42.65.92"), true);
  // Documentation, private, loopback and another provider's addresses are outside.
  for (const address of ["203.0.113.7", "10.0.0.1", "127.0.0.1", "::1", "192.168.1.20"]) {
    assert.equal(networks.contains("openai", address), false, address);
    assert.equal(networks.contains("anthropic", address), false, address);
  }
  assert.equal(networks.contains("anthropic", "104.18.6.192"), false);
  assert.equal(networks.contains("openai", "160.79.104.10"), false);
  assert.ok(PROVIDER_NETWORKS.openai.length > 100 && PROVIDER_NETWORKS.anthropic.length >= 1);
});

Deno.test("endpoint check: addresses parse as IPv4, IPv6 and IPv4-mapped IPv6; junk does not", () => {
  assert.deepEqual(parseAddress("1.2.3.4"), { v6: false, value: 0x01020304n });
  assert.deepEqual(parseAddress("::ffff:1.2.3.4"), { v6: false, value: 0x01020304n });
  assert.deepEqual(parseAddress("2001:db8::1"), { v6: true, value: (0x20010db8n << 96n) | 1n });
  assert.deepEqual(parseAddress("::"), { v6: true, value: 0n });
  for (const bad of ["1.2.3", "256.1.1.1", "1.2.3.4.5", "2001:db8:::1", "1:2:3:4:5:6:7:8:9", "localhost", "", "1::2::3"]) {
    assert.equal(parseAddress(bad), null, bad);
  }
});

Deno.test("endpoint check: one address outside the networks forbids the host; verdicts are cached for the period", async () => {
  let now = 0;
  let lookups = 0;
  const answers = new Map([["api.openai.com", ["104.18.6.192", "203.0.113.7"]]]);
  const resolver = (host: string) => {
    lookups++;
    return staticResolver(answers)(host);
  };
  const guard = new EndpointGuard({ resolver, networks, cacheMs: 1_000, now: () => now });
  const first = await guard.check("openai", "api.openai.com");
  assert.deepEqual(first, { kind: "forbidden", host: "api.openai.com", addresses: ["104.18.6.192", "203.0.113.7"], outside: ["203.0.113.7"], fresh: true });
  const again = await guard.check("openai", "api.openai.com");
  assert.equal(again.kind === "forbidden" && again.fresh, false);
  assert.equal(lookups, 1);
  // The period over, the host is resolved again: now only its official address.
  now = 1_000;
  answers.set("api.openai.com", ["104.18.6.192"]);
  assert.deepEqual(await guard.check("openai", "api.openai.com"), {
    kind: "allowed",
    host: "api.openai.com",
    addresses: ["104.18.6.192"],
    address: "104.18.6.192",
  });
  assert.equal(lookups, 2);
});

Deno.test("endpoint check: a host that does not resolve is unreachable, not forbidden, and is not cached", async () => {
  const guard = new EndpointGuard({ resolver: staticResolver(new Map()), networks });
  const v = await guard.check("anthropic", "api.anthropic.com");
  assert.equal(v.kind, "unresolved");
  assert.equal((await guard.check("anthropic", "api.anthropic.com")).kind, "unresolved");
});

Deno.test("endpoint check: --dev-resolve specs parse, and a bad one is refused with the spec named", () => {
  assert.deepEqual(parseDevResolve(["api.openai.com=203.0.113.7,104.18.6.192"]), new Map([["api.openai.com", ["203.0.113.7", "104.18.6.192"]]]));
  assert.throws(() => parseDevResolve(["api.openai.com"]), /--dev-resolve api.openai.com: expected HOST=IP/);
  assert.throws(() => parseDevResolve(["api.openai.com=not-an-ip"]), /expected HOST=IP/);
});

Deno.test("endpoint report: one per host per interval, however often calls are refused; hosts are counted apart", () => {
  let now = 1_000_000;
  const throttle = new EndpointReportThrottle(ENDPOINT_REPORT_INTERVAL_MS, () => now);
  let sent = 0;
  // A call refused every 10 ms for two intervals: two reports, not thousands.
  for (let t = 0; t < 2 * ENDPOINT_REPORT_INTERVAL_MS; t += 10) {
    now = 1_000_000 + t;
    if (throttle.take("openai api.openai.com")) sent++;
  }
  assert.equal(sent, 2);
  // Another host has its own interval.
  assert.equal(throttle.take("anthropic api.anthropic.com"), true);
  assert.equal(throttle.take("anthropic api.anthropic.com"), false);
  // The interval is counted from the last report sent.
  now += ENDPOINT_REPORT_INTERVAL_MS - 1;
  assert.equal(throttle.take("anthropic api.anthropic.com"), false);
  now += 1;
  assert.equal(throttle.take("anthropic api.anthropic.com"), true);
});
