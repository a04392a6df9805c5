/** Runs the mock provider on its own: `npm run mock -- --port 9999 [--rpm-limit 120] [--no-rate-limit-headers]`. */
import { startMockProvider } from "./mod.ts";

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const port = Number(arg("--port") ?? 0);
const rpm = arg("--rpm-limit");
const mock = await startMockProvider({
  port,
  rpmLimit: rpm === undefined ? undefined : Number(rpm),
  rateLimitHeaders: !process.argv.includes("--no-rate-limit-headers"),
});
console.log(`MOCK_PROVIDER_ORIGIN=${mock.origin}`);
