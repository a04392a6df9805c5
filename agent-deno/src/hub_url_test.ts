import assert from "node:assert/strict";
import { hubNetPermission, HubUrlError, parseHubUrl } from "./hub_url.ts";

Deno.test("hub URL: an https origin with a DNS name or IP address and an optional port", () => {
  assert.equal(parseHubUrl("https://hub.example.com"), "https://hub.example.com");
  assert.equal(parseHubUrl("https://Hub.Example.com:8788/"), "https://hub.example.com:8788");
  assert.equal(parseHubUrl("https://hub.example.com:443"), "https://hub.example.com");
  assert.equal(parseHubUrl("https://127.0.0.1:8788"), "https://127.0.0.1:8788");
  assert.equal(parseHubUrl("https://[::1]:8788"), "https://[::1]:8788");
  assert.equal(hubNetPermission("https://hub.example.com"), "hub.example.com:443");
  assert.equal(hubNetPermission("https://[::1]:8788"), "[::1]:8788");
});

Deno.test("hub URL: refuses anything that could name another host or widen the permission", () => {
  for (const bad of [
    "http://hub.example.com",
    "wss://hub.example.com",
    "https://hub.example.com/agent",
    "https://hub.example.com/?x=1",
    "https://hub.example.com#x",
    "https://user:pass@hub.example.com",
    "https://hub.example.com@evil.example.com",
    "https://hub.example.com,evil.example.com",
    "https://hub.example.com:8788,evil.example.com:443",
    "https://hub.example.com:0",
    "https://hub.example.com:65536",
    "https://hub_example.com",
    "https://-hub.example.com",
    "https://0x7f.1",
    "https://1.2.3",
    "https://300.1.1.1",
    " https://hub.example.com",
    "https://hub.example.com\n",
    "https://" + "a".repeat(300) + ".com",
  ]) {
    assert.throws(() => parseHubUrl(bad), HubUrlError, bad);
  }
});
