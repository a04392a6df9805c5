# The portal (Next.js behind web/server.ts, which resolves client addresses and answers /healthz and /readyz).
# It reads the hub's database and the gateway's admin listener (docs/operations/portal.md). Multi-stage: the
# portal is built in the build stage; the runtime stage holds the build and production packages, non-root.
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
COPY web web
RUN NEXT_TELEMETRY_DISABLED=1 npm run web:build && npm prune --omit=dev --no-audit --no-fund

FROM node:20.20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10003 --home-dir /app wellspring
WORKDIR /app
COPY --from=build /app /app
USER wellspring
ENV HOST=0.0.0.0 WEB_PORT=3000 NODE_ENV=production NEXT_TELEMETRY_DISABLED=1
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.WEB_PORT||3000)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["node_modules/.bin/tsx", "web/server.ts"]
