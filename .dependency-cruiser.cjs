/**
 * Import rules (npm run lint:imports, part of npm test). What each part may import is written in
 * docs/ARCHITECTURE.md ("Map"); these rules keep it true without anyone remembering it.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "protocol-is-runtime-neutral",
      comment: "protocol/ is shared by Node and Deno: it imports nothing of the hub or the agent, no npm package and no Node built-in.",
      severity: "error",
      from: { path: "^protocol/src" },
      to: { pathNot: "^protocol/src" },
    },
    {
      name: "agent-imports-only-the-protocol",
      comment: "The agent runs on owners' machines: it imports its own files, the protocol and ws, nothing of the hub.",
      severity: "error",
      from: { path: "^agent-deno/" },
      to: { path: "^(gateway|web|prisma|mock-provider|e2e|bench|scripts)/" },
    },
    {
      name: "billing-below-the-request-path",
      comment: "Billing is a domain the request path calls; it never imports the HTTP layer, the tunnel, the operations layer or the CLI.",
      severity: "error",
      from: { path: "^gateway/src/billing/", pathNot: "\\.test\\.ts$|/testing/" },
      to: { path: "^gateway/src/(api|tunnel|ops|cli|risk)/" },
    },
    {
      name: "ops-below-the-listeners",
      comment: "The operations layer is called by the CLI, the admin API and the portal; it never imports them, the request path or the tunnel.",
      severity: "error",
      from: { path: "^gateway/src/ops/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|tunnel|cli)/" },
    },
    {
      name: "tunnel-does-not-know-http-or-money",
      comment: "The tunnel carries streams; it knows nothing of the public API or of billing.",
      severity: "error",
      from: { path: "^gateway/src/tunnel/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|billing|cli)/" },
    },
    {
      name: "limits-below-the-request-path",
      comment: "Limits are a domain the request path calls; they never import the HTTP layer, the tunnel, billing, the operations layer or the CLI.",
      severity: "error",
      from: { path: "^gateway/src/limits/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|tunnel|billing|ops|cli|archive|risk|routing)/" },
    },
    {
      name: "routing-between-the-request-path-and-the-tunnel",
      comment: "Routing chooses among the tunnel's agents for the request path; it never imports the HTTP layer, billing, the operations layer or the CLI.",
      severity: "error",
      from: { path: "^gateway/src/routing/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|billing|ops|cli|archive|risk)/" },
    },
    {
      name: "peers-beside-the-tunnel",
      comment:
        "The gateway links forward streams between gateways' tunnels; they never import the HTTP layer, billing, routing, the operations layer or the CLI.",
      severity: "error",
      from: { path: "^gateway/src/peers/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|billing|routing|ops|cli|archive|risk|limits)/" },
    },
    {
      name: "observability-is-a-leaf",
      comment: "Metrics are observed from everywhere; the metrics module imports nothing of the gateway, so anything may call it.",
      severity: "error",
      from: { path: "^gateway/src/observability/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|tunnel|billing|ops|cli|archive|risk|routing)/" },
    },
    {
      name: "archive-below-the-listeners",
      comment: "The archive job moves old rows; it knows nothing of the request path, the tunnel, billing or the operations layer.",
      severity: "error",
      from: { path: "^gateway/src/archive/", pathNot: "\\.test\\.ts$" },
      to: { path: "^gateway/src/(api|tunnel|billing|ops|cli|risk)/" },
    },
    {
      name: "edge-ledger-below-the-listeners",
      comment: "The hub's receipt chains check receipts against settlement rows and raise risk flags; they know nothing of HTTP, the tunnel or the CLI.",
      severity: "error",
      from: { path: "^gateway/src/ledger/", pathNot: "\\.test\\.ts$|/testing/" },
      to: { path: "^gateway/src/(api|tunnel|cli|ops)/" },
    },
    {
      name: "portal-through-the-operations-layer",
      comment: "The portal reaches the gateway only through its public face (gateway/src/mod.ts = ops/) and the money formatter, never its internals.",
      severity: "error",
      from: { path: "^web/" },
      to: { path: "^gateway/src/", pathNot: "^gateway/src/(mod\\.ts|ops/|billing/money\\.ts)" },
    },
    {
      name: "portal-never-bundles-migrations",
      comment: "The portal uses the database client, never the migration tools (Turbopack would bundle the Wasm schema engine).",
      severity: "error",
      from: { path: "^web/" },
      to: { path: "^prisma/src/(migrate|embedded)\\.ts$" },
    },
    {
      name: "database-package-knows-no-app",
      comment: "prisma/ (the schema, client and migrations) imports nothing of the gateway, portal or agent.",
      severity: "error",
      from: { path: "^prisma/src" },
      to: { path: "^(gateway|web|agent-deno|mock-provider)/" },
    },
    {
      name: "product-never-imports-tests",
      comment: "Test harnesses and fixtures stay out of what ships.",
      severity: "error",
      from: {
        path: "^(gateway|web|agent-deno|protocol|prisma|mock-provider)/",
        pathNot: "(\\.test\\.ts|_test\\.ts|\\.spec\\.ts)$|/testing/|^web/.*\\.test\\.ts$",
      },
      to: { path: "^(e2e|bench)/|/testing/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)(node_modules|\\.next|generated|test-results|\\.data)/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default"],
      extensions: [".ts", ".tsx", ".js", ".mjs", ".cjs"],
    },
  },
};
