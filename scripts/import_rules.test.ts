/**
 * The import rules (.dependency-cruiser.cjs, run by `npm run lint:imports` in `npm test`) catch what they
 * forbid: each rule is run against a small tree that breaks it, laid out like the repository. (That the
 * repository itself breaks none is `npm run lint`'s job.)
 */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..");
const run = promisify(execFile);
const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Writes `files` into a fresh tree and runs the repository's rules on it; the violations' rule names. */
async function violations(files: Record<string, string>): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), "ws-imports-"));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  await writeFile(
    join(dir, "tsconfig.json"),
    JSON.stringify({ compilerOptions: { allowImportingTsExtensions: true, noEmit: true, module: "nodenext", moduleResolution: "nodenext" } }),
  );
  const out = await run(
    join(ROOT, "node_modules/.bin/depcruise"),
    ["--config", join(ROOT, ".dependency-cruiser.cjs"), "--output-type", "json", ...new Set(Object.keys(files).map((f) => f.split("/")[0]!))],
    { cwd: dir },
  ).catch((e: { stdout: string }) => e);
  const report = JSON.parse(out.stdout) as { summary: { violations: { rule: { name: string } }[] } };
  return report.summary.violations.map((v) => v.rule.name).sort();
}

describe("import rules", () => {
  it("billing never imports the HTTP layer; the tunnel never imports billing", async () => {
    expect(
      await violations({
        "gateway/src/billing/meter.ts": 'import { sendError } from "../api/errors.ts";\nexport const x = sendError;\n',
        "gateway/src/api/errors.ts": "export const sendError = 1;\n",
        "gateway/src/tunnel/registry.ts": 'import { x } from "../billing/meter.ts";\nexport const y = x;\n',
      }),
    ).toEqual(["billing-below-the-request-path", "tunnel-does-not-know-http-or-money"]);
  });

  it("the portal reaches the gateway only through its public face; the protocol imports nothing of the hub", async () => {
    expect(
      await violations({
        "web/lib/data/keys.ts":
          'import { issueKey } from "../../../gateway/src/ops/keys.ts";\nimport { proxy } from "../../../gateway/src/api/proxy.ts";\nexport const a = [issueKey, proxy];\n',
        "gateway/src/ops/keys.ts": "export const issueKey = 1;\n",
        "gateway/src/api/proxy.ts": "export const proxy = 1;\n",
        "protocol/src/frame.ts":
          'import { createHash } from "node:crypto";\nimport { newId } from "../../prisma/src/ids.ts";\nexport const b = [createHash, newId];\n',
        "prisma/src/ids.ts": "export const newId = 1;\n",
      }),
    ).toEqual(["portal-through-the-operations-layer", "protocol-is-runtime-neutral", "protocol-is-runtime-neutral"]);
  });

  it("the gateway links never import routing, billing or the HTTP layer", async () => {
    expect(
      await violations({
        "gateway/src/peers/mod.ts": 'import { plan } from "../routing/policy.ts";\nexport const p = plan;\n',
        "gateway/src/routing/policy.ts": "export const plan = 1;\n",
      }),
    ).toEqual(["peers-beside-the-tunnel"]);
  });

  it("the agent imports nothing of the hub", async () => {
    expect(
      await violations({
        "agent-deno/src/main.ts": 'import { x } from "../../gateway/src/mod.ts";\nexport const y = x;\n',
        "gateway/src/mod.ts": "export const x = 1;\n",
      }),
    ).toEqual(["agent-imports-only-the-protocol"]);
  });

  it("operations and the edge ledger never import the listeners; metrics and the archive import nothing above them", async () => {
    expect(
      await violations({
        "gateway/src/ops/keys.ts": 'import { route } from "../api/router.ts";\nexport const k = route;\n',
        "gateway/src/api/router.ts": "export const route = 1;\n",
        "gateway/src/observability/metrics.ts": 'import { hold } from "../billing/meter.ts";\nexport const m = hold;\n',
        "gateway/src/billing/meter.ts": "export const hold = 1;\n",
        "gateway/src/archive/job.ts": 'import { conn } from "../tunnel/registry.ts";\nexport const j = conn;\n',
        "gateway/src/tunnel/registry.ts": "export const conn = 1;\n",
        "gateway/src/ledger/receipts.ts": 'import { route } from "../api/router.ts";\nexport const r = route;\n',
      }),
    ).toEqual(["archive-below-the-listeners", "edge-ledger-below-the-listeners", "observability-is-a-leaf", "ops-below-the-listeners"]);
  });

  it("the database package knows no app, the portal never bundles migrations, and nothing shipped imports tests", async () => {
    expect(
      await violations({
        "prisma/src/client.ts": 'import { x } from "../../gateway/src/mod.ts";\nexport const c = x;\n',
        "gateway/src/mod.ts": 'import { h } from "../../e2e/stack/harness.ts";\nexport const x = h;\n',
        "e2e/stack/harness.ts": "export const h = 1;\n",
        "web/lib/db.ts": 'import { migrate } from "../../prisma/src/migrate.ts";\nexport const d = migrate;\n',
        "prisma/src/migrate.ts": "export const migrate = 1;\n",
      }),
    ).toEqual(["database-package-knows-no-app", "portal-never-bundles-migrations", "product-never-imports-tests"]);
  });
});
