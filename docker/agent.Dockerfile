# A key owner's agent. Mount its data folder (agent.json, agent-key.pk8, config.json) at /app/agent-deno/data
# and pass provider keys as the environment variables named in config.json. The command is the one the docs
# give an owner (docs/operations/agent.md); e2e/stack/agent_production.test.ts runs it as written.
# Multi-stage: npm installs what agent-deno/package.json pins (ws, and the deno package: the runtime) in the
# build stage; the runtime image needs no Node.js.
FROM node:20.20-bookworm-slim AS build
WORKDIR /app
COPY protocol protocol
COPY agent-deno agent-deno
WORKDIR /app/agent-deno
RUN npm install --omit=dev --no-audit --no-fund

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates tini && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --create-home --home-dir /home/agent agent
# The code stays root's: the agent user owns only its data folder, where the launcher lets the agent write its
# state folder and itself the releases folder (signed updates); never the code it runs.
COPY --from=build /app /app
WORKDIR /app/agent-deno
RUN mkdir -p data/state data/releases && chown -R agent data
USER agent
VOLUME /app/agent-deno/data
# Healthy while the agent runs and its tunnel to the hub is up (read from its status file; it opens no port).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["./wellspring-agent", "status"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["./wellspring-agent", "start"]
