import assert from "node:assert/strict";
import { parseConfig } from "./config.ts";
import { enrollPermissions, servePermissions, stateDir } from "./permissions.ts";
import { proxyEnvSet, proxyFromEnv } from "./egress_proxy.ts";

const config = parseConfig({
  upstreams: [
    { provider: "openai", apiKeyEnv: "OPENAI_API_KEY", models: ["gpt-4o-mini"] },
    { provider: "azure", resource: "contoso", apiKey: "k", models: ["gpt-4o"] },
  ],
});

Deno.test("permissions: the serving agent reaches the hub and the official hosts, reads its data, writes only its state", () => {
  assert.deepEqual(servePermissions({ dataDir: "/srv/agent/data", hubOrigin: "https://hub.example.com:8788", config, devOrigin: null }), [
    "--allow-net=hub.example.com:8788,api.openai.com,contoso.openai.azure.com",
    "--allow-read=/srv/agent/data",
    "--allow-write=/srv/agent/data/state",
    "--allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE,OPENAI_API_KEY",
  ]);
  assert.equal(
    servePermissions({ dataDir: "/d", hubOrigin: "https://hub.example.com", config, devOrigin: "http://127.0.0.1:9999" })[0],
    "--allow-net=hub.example.com:443,api.openai.com,contoso.openai.azure.com,127.0.0.1:9999",
  );
  // Behind a proxy: its host:port and the proxy variables that are set, nothing more.
  assert.deepEqual(
    servePermissions({
      dataDir: "/d",
      hubOrigin: "https://hub.example.com",
      config,
      devOrigin: null,
      proxy: { address: "proxy.corp:3128", env: ["HTTPS_PROXY", "no_proxy"] },
    }),
    [
      "--allow-net=hub.example.com:443,api.openai.com,contoso.openai.azure.com,proxy.corp:3128",
      "--allow-read=/d",
      "--allow-write=/d/state",
      "--allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE,OPENAI_API_KEY,HTTPS_PROXY,no_proxy",
    ],
  );
  assert.deepEqual(enrollPermissions("/d", "https://[::1]:8788"), [
    "--allow-net=[::1]:8788",
    "--allow-read=/d",
    "--allow-write=/d",
    "--allow-env=WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE",
  ]);
});

/** What a compromised agent would try, run under exactly the permissions the launcher grants. */
const PROBE = `
const data = Deno.args[0];
const results = {};
async function attempt(name, fn) {
  try { await fn(); results[name] = "ok"; } catch (e) { results[name] = e.name; }
}
await attempt("readIdentity", () => Deno.readTextFile(data + "/agent.json"));
await attempt("writeIdentity", () => Deno.writeTextFile(data + "/agent.json", "{}"));
await attempt("writeConfig", () => Deno.writeTextFile(data + "/config.json", "{}"));
await attempt("writeKey", () => Deno.writeFile(data + "/agent-key.pk8", new Uint8Array(1)));
await attempt("removeIdentity", () => Deno.remove(data + "/agent.json"));
await attempt("renameIntoData", () => Deno.rename(data + "/state/prices.json", data + "/agent.json"));
await attempt("linkIdentity", () => Deno.symlink(data + "/agent.json", data + "/state/link"));
await attempt("writeState", () => Deno.writeTextFile(data + "/state/prices.json", "{}"));
await attempt("readOtherEnv", () => { if (Deno.env.get("HOME") === undefined) throw new Error("unset"); });
await attempt("readKeyEnv", () => Deno.env.get("OPENAI_API_KEY"));
await attempt("netElsewhere", () => Deno.connect({ hostname: "203.0.113.7", port: 443 }));
await attempt("run", () => new Deno.Command("true").output());
console.log(JSON.stringify(results));
`;

Deno.test("permissions: under the launcher's grant the agent cannot rewrite the files that decide its permissions", async () => {
  const root = await Deno.makeTempDir();
  const data = `${root}/data`;
  try {
    await Deno.mkdir(stateDir(data), { recursive: true });
    await Deno.writeTextFile(`${data}/agent.json`, '{"original":true}');
    await Deno.writeTextFile(`${data}/config.json`, "{}");
    await Deno.writeTextFile(`${root}/probe.js`, PROBE);
    const permissions = servePermissions({ dataDir: data, hubOrigin: "https://hub.example.com:8788", config, devOrigin: null });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...permissions, `${root}/probe.js`, data],
      env: { OPENAI_API_KEY: "sk-test" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
      readIdentity: "ok",
      writeIdentity: "NotCapable",
      writeConfig: "NotCapable",
      writeKey: "NotCapable",
      removeIdentity: "NotCapable",
      renameIntoData: "NotCapable",
      linkIdentity: "NotCapable",
      writeState: "ok",
      readOtherEnv: "NotCapable",
      readKeyEnv: "ok",
      netElsewhere: "NotCapable",
      run: "NotCapable",
    });
    assert.equal(await Deno.readTextFile(`${data}/agent.json`), '{"original":true}');
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("permissions: behind a proxy the agent reads only the proxy variables set and reaches the proxy, nothing more", async () => {
  const root = await Deno.makeTempDir();
  const proxy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const proxyAddress = `127.0.0.1:${(proxy.addr as Deno.NetAddr).port}`;
  const env = { HTTPS_PROXY: `http://owner:pw@${proxyAddress}`, NO_PROXY: "internal.test", HTTP_PROXY: "http://other.test:8080", ALL_PROXY: "http://x" };
  try {
    const script = `
import { grantedEnv, proxyFromEnv } from ${JSON.stringify(new URL("./egress_proxy.ts", import.meta.url).href)};
const p = proxyFromEnv(grantedEnv);
const out = { address: p?.address, noProxy: p?.noProxy.length, httpProxy: grantedEnv("HTTP_PROXY") ?? null, allProxy: grantedEnv("ALL_PROXY") ?? null };
try { (await Deno.connect({ hostname: "127.0.0.1", port: ${(proxy.addr as Deno.NetAddr).port} })).close(); out.proxyNet = "ok"; } catch (e) { out.proxyNet = e.name; }
try { await Deno.connect({ hostname: "127.0.0.1", port: 9 }); out.otherNet = "ok"; } catch (e) { out.otherNet = e.name; }
console.log(JSON.stringify(out));
`;
    await Deno.writeTextFile(`${root}/probe.ts`, script);
    const permissions = servePermissions({
      dataDir: root,
      hubOrigin: "https://hub.example.com:8788",
      config,
      devOrigin: null,
      proxy: { address: proxyFromEnv((n) => env[n as keyof typeof env])!.address, env: proxyEnvSet((n) => env[n as keyof typeof env]) },
    });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", ...permissions, `${root}/probe.ts`],
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), {
      address: proxyAddress,
      noProxy: 1,
      httpProxy: null,
      allProxy: null,
      proxyNet: "ok",
      otherNet: "NotCapable",
    });
  } finally {
    proxy.close();
    await Deno.remove(root, { recursive: true });
  }
});
