/** Runs the mock provider on its own: `npm run mock -- --port 9999`. */
import { startMockProvider } from "./mod.ts";

const portArg = process.argv.indexOf("--port");
const port = portArg > 0 ? Number(process.argv[portArg + 1]) : 0;
const mock = await startMockProvider({ port });
console.log(`MOCK_PROVIDER_ORIGIN=${mock.origin}`);
