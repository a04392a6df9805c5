/**
 * What a key owner runs, in order, in the agent's folder, as the portal's Agents page and `npm run admin --
 * enroll-token` print it: enroll, write a starter configuration, start. Each step is one shell command.
 */
import { enrollCommand } from "./enroll.ts";

/** The starter configuration: one OpenAI and one Anthropic model, keys read from environment variables. */
export const STARTER_CONFIG = {
  upstreams: [
    { provider: "openai", apiKeyEnv: "OPENAI_API_KEY", models: ["gpt-4o-mini"] },
    { provider: "anthropic", apiKeyEnv: "ANTHROPIC_API_KEY", models: ["claude-haiku-4-5"] },
  ],
};

export interface EnrollSteps {
  enroll: string;
  configure: string;
  start: string;
}

export function enrollSteps(o: { agentUrl: string; pin: string; token: string; name: string }): EnrollSteps {
  return {
    enroll: enrollCommand(o),
    configure: `cat > data/config.json <<'EOF'\n${JSON.stringify({ name: o.name, ...STARTER_CONFIG }, null, 2)}\nEOF`,
    start: "export OPENAI_API_KEY=sk-…  ANTHROPIC_API_KEY=sk-ant-…   # your keys; only this machine sees them\n./wellspring-agent start",
  };
}
