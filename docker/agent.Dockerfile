# A key owner's agent. Mount its data folder (agent.json, agent-key.pk8, config.json) at /app/agent-deno/data
# and pass provider keys as the environment variables named in config.json. The command is the one the docs
# give an owner (docs/operations/agent.md); e2e/stack/agent_production.test.ts runs it as written.
FROM node:20.20-bookworm-slim
RUN useradd --system --uid 10002 --create-home --home-dir /home/agent agent
WORKDIR /app
COPY protocol protocol
COPY agent-deno agent-deno
WORKDIR /app/agent-deno
# agent-deno/package.json pins what the agent takes from npm: ws, and the deno package (its runtime). The code
# stays root's; the agent user owns only its data folder, and the launcher lets it write only data/state.
RUN npm install --omit=dev --no-audit --no-fund && mkdir -p data/state && chown -R agent data
USER agent
VOLUME /app/agent-deno/data
CMD ["./wellspring-agent", "start"]
