# The hub's gateway: the public API (:8787), the agent tunnel (:8788, TLS) and the admin listener (:8789: admin
# API and /metrics). Run several behind a load balancer, sharing PostgreSQL, Redis, HUB_ID, the tunnel key and
# DATA_DIR (docs/operations/production.md). Multi-stage: dependencies are installed and the Prisma client
# generated in the build stage; the runtime stage holds the code and production packages and runs as a
# non-root user.
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY protocol/package.json protocol/
COPY prisma/package.json prisma/
COPY mock-provider/package.json mock-provider/
COPY gateway/package.json gateway/
COPY web/package.json web/
COPY e2e/package.json e2e/
COPY scripts/prisma-generate.mjs scripts/
COPY prisma/schema.prisma prisma/prisma.config.ts prisma/
RUN npm ci --no-audit --no-fund
COPY protocol protocol
COPY prisma prisma
COPY gateway gateway
COPY agent-deno/release-keys.json agent-deno/release-keys.json
COPY scripts scripts
RUN npm prune --omit=dev --no-audit --no-fund

FROM node:20.20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssl ca-certificates tini && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app wellspring \
 && mkdir -p /data && chown wellspring /data
WORKDIR /app
COPY --from=build /app /app
USER wellspring
ENV HOST=0.0.0.0 ADMIN_HOST=0.0.0.0 DATA_DIR=/data NODE_ENV=production
VOLUME /data
EXPOSE 8787 8788 8789
# Ready: the ledger answers and the tunnel listener accepts agents (GET /readyz).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.GATEWAY_PORT||8787)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node", "--import", "tsx", "gateway/src/main.ts"]
