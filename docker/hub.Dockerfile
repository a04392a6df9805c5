# The hub: gateway (API :8787, agent tunnel :8788, admin :8789) and portal (:3000).
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends openssl ca-certificates && rm -rf /var/lib/apt/lists/*
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
COPY . .
RUN NEXT_TELEMETRY_DISABLED=1 npm run web:build

FROM node:20.20-bookworm-slim
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends openssl ca-certificates tini && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /app wellspring
COPY --from=build --chown=wellspring /app /app
USER wellspring
ENV HOST=0.0.0.0 DATA_DIR=/data NODE_ENV=production NEXT_TELEMETRY_DISABLED=1
VOLUME /data
EXPOSE 3000 8787 8788 8789
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["npm", "start"]
