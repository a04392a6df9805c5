/**
 * Run by upstream_workers_test.ts as its own process under the agent's kind of permissions (read access to a data
 * folder only, network to one loopback port): starts one upstream Worker, makes one call through it to the URL
 * it is given, and prints the outcome as JSON. From this file and from its `deno bundle` (as a release is built).
 */
import { originConnector, UpstreamPool } from "../upstream_http.ts";
import { UpstreamWorkers } from "../upstream_workers.ts";
import { BODY, call } from "./upstream_calls.ts";

const workers = new UpstreamWorkers(2, (error) => {
  console.error(error.message);
  Deno.exit(3);
});
await workers.ready();
const pool = new UpstreamPool(originConnector({ proxy: null }, workers.dialer));
const r = await call(Deno.args[0]!, pool, BODY);
console.log(JSON.stringify({ outcome: r.outcome, body: r.body, openPerWorker: workers.openPerWorker }));
pool.close();
workers.close();
