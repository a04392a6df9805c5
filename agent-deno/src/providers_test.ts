import assert from "node:assert/strict";
import { checkDevOrigin, EndpointError, keyFingerprint, officialOrigin, upstreamHosts, upstreamUrl } from "./providers.ts";

Deno.test("official endpoints are fixed in code", () => {
  const chat = { path: "/v1/chat/completions", query: "" };
  assert.equal(upstreamUrl({ provider: "openai" }, chat, null), "https://api.openai.com/v1/chat/completions");
  assert.equal(upstreamUrl({ provider: "anthropic" }, { path: "/v1/messages", query: "?beta=true" }, null), "https://api.anthropic.com/v1/messages?beta=true");
  assert.equal(upstreamUrl({ provider: "azure", resource: "contoso" }, chat, null), "https://contoso.openai.azure.com/openai/v1/chat/completions");
  assert.equal(upstreamUrl({ provider: "openai" }, chat, "http://127.0.0.1:9"), "http://127.0.0.1:9/v1/chat/completions");
  assert.deepEqual(upstreamHosts([{ provider: "openai" }, { provider: "anthropic" }, { provider: "azure", resource: "contoso" }]), [
    "api.openai.com:443",
    "api.anthropic.com:443",
    "contoso.openai.azure.com:443",
  ]);
});

Deno.test("an Azure resource name cannot smuggle another host", () => {
  for (const resource of ["evil.com/x", "a.b", "", "x".repeat(80), "relay.example.com#"]) {
    assert.throws(() => officialOrigin({ provider: "azure", resource }), EndpointError);
  }
});

Deno.test("a path that does not start with /v1/ is refused", () => {
  assert.throws(() => upstreamUrl({ provider: "openai" }, { path: "//evil.com/v1/x", query: "" }, null), EndpointError);
  assert.throws(() => upstreamUrl({ provider: "openai" }, { path: "@evil.com/v1", query: "" }, null), EndpointError);
});

Deno.test("the development origin must be loopback", () => {
  assert.equal(checkDevOrigin("http://127.0.0.1:9999"), "http://127.0.0.1:9999");
  assert.equal(checkDevOrigin("http://localhost:1234/"), "http://localhost:1234");
  for (const bad of ["http://10.0.0.1:80", "https://relay.example.com", "http://127.0.0.1:9/v1", "ftp://127.0.0.1", "not a url", "http://127.0.0.1.evil.com"]) {
    assert.throws(() => checkDevOrigin(bad), EndpointError, bad);
  }
});

Deno.test("key fingerprints are stable, distinct and do not contain the key", async () => {
  const a = await keyFingerprint("sk-live-aaaaaaaaaaaaaaaa");
  assert.equal(a, await keyFingerprint("sk-live-aaaaaaaaaaaaaaaa"));
  assert.notEqual(a, await keyFingerprint("sk-live-aaaaaaaaaaaaaaab"));
  assert.match(a, /^kfp_[0-9a-f]{32}$/);
  assert.ok(!a.includes("aaaa"));
});
