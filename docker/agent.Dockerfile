# A key owner's agent. Mount its data folder (agent.json, agent-key.pk8, config.json) at /app/agent-deno/data
# and pass provider keys as the environment variables named in config.json.
FROM node:20.20-bookworm-slim
RUN useradd --system --uid 10002 --home /app agent
WORKDIR /app
COPY protocol protocol
COPY agent-deno agent-deno
WORKDIR /app/agent-deno
# agent-deno/package.json lists what Deno resolves from node_modules (ws); the runtime is the `deno` package.
RUN npm install --omit=dev --no-audit --no-fund && npm install --no-save --no-audit --no-fund deno@2.9.6 \
 && mkdir -p data && chown -R agent /app/agent-deno
USER agent
VOLUME /app/agent-deno/data
CMD ["./node_modules/.bin/deno", "run", "--no-prompt", "--allow-read=./data", "--allow-run", "--allow-env", "launch.ts", "start"]
