/**
 * `npx tsx bench/pg_statements.ts [--ledger on|off]`: which statements PostgreSQL runs per request, and their CPU,
 * under bench:hop's concurrency-32 load (BENCH_S2_REQUESTS small calls, default 4000, billing on; the edge ledger
 * off unless `--ledger on`). `pg_stat_statements` needs a server restart to load, so this run's gateway connects
 * with `log_min_duration_statement=0` and `log_statement_stats=on` for its own sessions only (connection options,
 * superuser), and the server's log (PG_LOG, default /var/log/postgresql/postgresql-15-main.log) is read back for
 * this run's database: each statement's calls and CPU (user + system, getrusage per parse, bind and execute
 * message). Logging every statement costs CPU itself, so the totals are above bench:hop's; the shares are what
 * this is for. Prints a table (statements by CPU, normalised: literals and parameter lists folded) and one JSON line.
 */
import { readFile, stat } from "node:fs/promises";
import { startStack } from "../e2e/stack/harness.ts";
import { Generator } from "./generator.ts";

const REQUESTS = Number(process.env.BENCH_S2_REQUESTS ?? 4000);
const CONCURRENCY = 32;
const LOG = process.env.PG_LOG ?? "/var/log/postgresql/postgresql-15-main.log";
const ledgerOn = process.argv.includes("on");

const gen = new Generator();
const stack = await startStack({
  concurrentStreamsMax: 1024,
  agentLedger: ledgerOn,
  gatewayDatabaseUrl: (url) => {
    const u = new URL(url);
    u.searchParams.set("options", "-c log_min_duration_statement=0 -c log_statement_stats=on");
    return u.toString();
  },
});
const dbName = new URL(stack.database.url).pathname.slice(1);
let result: { statement: string; calls: number; cpuMs: number }[] = [];
let total = 0;
try {
  await gen.call(
    "load",
    stack.baseUrl,
    Array.from({ length: CONCURRENCY }, () => stack.apiKey),
    20,
  );
  const from = (await stat(LOG)).size;
  const perClient = Math.floor(REQUESTS / CONCURRENCY);
  await gen.call(
    "load",
    stack.baseUrl,
    Array.from({ length: CONCURRENCY }, () => stack.apiKey),
    perClient,
  );
  const n = perClient * CONCURRENCY;
  await new Promise((r) => setTimeout(r, 500)); // settlements after the last response
  const text = (await readFile(LOG)).subarray(from).toString("utf8");
  // Entries: a line starting with a timestamp, then continuation lines (tab-indented).
  const entries: string[] = [];
  for (const line of text.split("\n")) {
    if (/^\d{4}-\d\d-\d\d /.test(line)) entries.push(line);
    else if (entries.length) entries[entries.length - 1] += "\n" + line;
  }
  // Each message's statistics are a LOG line ("EXECUTE MESSAGE STATISTICS", …), a DETAIL with the getrusage
  // figures and a STATEMENT with the statement's text, in that order, per backend.
  const byStatement = new Map<string, { calls: number; cpuMs: number }>();
  const open = new Map<string, { execute: boolean; ms?: number }>(); // pid → statistics awaiting their statement
  const norm = (sql: string) =>
    sql
      .replace(/\s+/g, " ")
      .replace(/'(?:[^']|'')*'/g, "'?'")
      .replace(/\$\d+/g, "$n")
      .replace(/\b\d+\b/g, "N")
      .trim()
      .slice(0, 160);
  for (const e of entries) {
    const m = /^\S+ \S+ \S+ \[(\d+)\] \S+@(\S+) (\w+):\s+([\s\S]*)$/.exec(e);
    if (!m || m[2] !== dbName) continue;
    const [, pid, , kind, body] = m as unknown as [string, string, string, string, string];
    if (kind === "LOG") {
      const s = /^(QUERY|PARSE MESSAGE|BIND MESSAGE|EXECUTE MESSAGE) STATISTICS/.exec(body);
      if (s) open.set(pid, { execute: s[1] === "QUERY" || s[1] === "EXECUTE MESSAGE" });
      else open.delete(pid);
    } else if (kind === "DETAIL") {
      const o = open.get(pid);
      const n = /([\d.]+) s user, ([\d.]+) s system/.exec(body);
      if (o && n) o.ms = (Number(n[1]) + Number(n[2])) * 1000;
    } else if (kind === "STATEMENT") {
      const o = open.get(pid);
      open.delete(pid);
      if (o?.ms === undefined) continue;
      const key = norm(body);
      const row = byStatement.get(key) ?? { calls: 0, cpuMs: 0 };
      if (o.execute) row.calls++;
      row.cpuMs += o.ms;
      total += o.ms;
      byStatement.set(key, row);
    }
  }
  result = [...byStatement.entries()].map(([statement, r]) => ({ statement, calls: r.calls, cpuMs: +r.cpuMs.toFixed(1) })).sort((a, b) => b.cpuMs - a.cpuMs);
  console.log(`requests ${n}, logged CPU ${(total / 1000).toFixed(3)} s = ${(((total / n) * 1000) / 1000).toFixed(3)} s per 1,000`);
  for (const r of result.slice(0, 30))
    console.log(
      `${String(r.calls).padStart(6)} calls  ${(((r.cpuMs / n) * 1000) / 1000).toFixed(4)} s/1000  ${((r.cpuMs / total) * 100).toFixed(1).padStart(5)}%  ${r.statement}`,
    );
  console.log(
    JSON.stringify({
      at: new Date().toISOString(),
      requests: n,
      ledger: ledgerOn ? "on" : "off",
      loggedCpuSecondsPer1000: +(((total / n) * 1000) / 1000).toFixed(3),
      statements: result.slice(0, 30),
    }),
  );
} finally {
  await stack.close();
  await gen.close();
}
