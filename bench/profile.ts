/**
 * `npm run bench:profile`: where the gateway's and the agent's CPU goes on the small-request path. Runs
 * `npm run bench:hop` with BENCH_PERF (perf samples of both processes during the concurrency-32 phase, on-CPU
 * only, JavaScript frames named through V8's --perf-basic-prof), then prints a textual flame summary per process:
 * the share of its samples by where the time is spent (JavaScript by file, the runtime's native code, the kernel),
 * the top functions by self time, and the top JavaScript functions by inclusive time (self plus what they call,
 * as far as the call chains reach: native frames without frame pointers cut them). BENCH_PROFILE_TOP sets the
 * rows per table (default 25); BENCH_PROFILE_DIR=<dir> summarises a recording made before instead of running
 * the benchmark. Arguments go to bench:hop (`npm run bench:profile -- --ledger off` profiles without the edge ledger). Writes the summary to stdout and keeps perf.data in a temporary folder it names.
 */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const TOP = Number(process.env.BENCH_PROFILE_TOP ?? 25);
/** perf report's output for one call can be large (every symbol): this bounds what is read, bytes. */
const REPORT_BYTES_MAX = 256 * 2 ** 20;

const run = promisify(execFile);
const dir = process.env.BENCH_PROFILE_DIR ?? (await mkdtemp(join(tmpdir(), "ws-profile-")));
if (!process.env.BENCH_PROFILE_DIR) {
  const bench = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "hop.ts"), ...process.argv.slice(2)], {
    env: { ...process.env, BENCH_PERF: dir },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const [code] = (await once(bench, "exit")) as [number | null];
  if (code !== 0) throw new Error(`bench:hop exited with ${code}`);
}

const pids = JSON.parse(await readFile(join(dir, "pids.json"), "utf8")) as Record<string, number[]>;
const data = join(dir, "perf.data");

interface Row {
  pct: number;
  dso: string;
  sym: string;
}

/** `perf report` rows (overhead, dso, symbol) for some pids, self or inclusive, as shares of those pids' samples. */
async function report(pidList: number[], children: boolean): Promise<Row[]> {
  const { stdout } = await run(
    "perf",
    [
      "report",
      "-i",
      data,
      "--stdio",
      "-g",
      "none",
      children ? "--children" : "--no-children",
      "--sort",
      "dso,sym",
      "--pid",
      pidList.join(","),
      "-t",
      "\t",
      "--percentage",
      "relative",
    ],
    { maxBuffer: REPORT_BYTES_MAX },
  );
  const rows: Row[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.trim() || line.startsWith("#")) continue;
    const cols = line.split("\t").map((c) => c.trim());
    // --children: children%, self%, dso, sym; --no-children: self%, dso, sym
    const pct = Number.parseFloat(cols[0]!);
    const dso = cols[children ? 2 : 1] ?? "";
    const sym = (cols[children ? 3 : 2] ?? "").replace(/^\[[.k]\]\s*/, "");
    if (Number.isFinite(pct)) rows.push({ pct, dso, sym });
  }
  return rows;
}

/** Where a sample's own time is: a JavaScript file, the runtime binary, a library, or the kernel. */
function place(r: Row): string {
  if (r.dso.includes("kernel")) return "kernel (syscalls: sockets, epoll, memory)";
  const js = /^(?:JS|LazyCompile|Function|Script):[*~^+]?\S*\s+(\S+?)(?::\d+)*$/.exec(r.sym);
  if (js) {
    const file = js[1]!.replace(/^file:\/\//, "");
    const at = file.search(/\/(?:gateway|protocol|agent-deno|node_modules|prisma)\//);
    const inModules = file.lastIndexOf("/node_modules/");
    if (inModules >= 0)
      return `js ${file
        .slice(inModules + 1)
        .split("/")
        .slice(0, 3)
        .join("/")}`;
    return `js ${at >= 0 ? file.slice(at + 1) : file}`;
  }
  if (r.dso.startsWith("[JIT]") || r.dso.includes("perf-")) return `jit other (${r.sym.split(" ")[0]?.split(":")[0] ?? "?"})`;
  return `native ${r.dso.split("/").pop()}`;
}

const fmt = (rows: { pct: number; label: string }[]) => rows.map((r) => `  ${r.pct.toFixed(1).padStart(5)}%  ${r.label}`).join("\n");

const out: string[] = [];
for (const [role, list] of Object.entries(pids)) {
  const self = await report(list, false);
  const inclusive = await report(list, true);
  const byPlace = new Map<string, number>();
  for (const r of self) byPlace.set(place(r), (byPlace.get(place(r)) ?? 0) + r.pct);
  out.push(`## ${role} (pids ${list.join(", ")})`);
  out.push("by place (self time):");
  out.push(
    fmt(
      [...byPlace]
        .sort((a, b) => b[1] - a[1])
        .slice(0, TOP)
        .map(([label, pct]) => ({ label, pct })),
    ),
  );
  out.push("top functions by self time:");
  out.push(fmt(self.slice(0, TOP).map((r) => ({ pct: r.pct, label: `${r.sym} [${r.dso.split("/").pop()}]` }))));
  out.push("top JavaScript functions by inclusive time:");
  out.push(
    fmt(
      inclusive
        .filter((r) => place(r).startsWith("js "))
        .sort((a, b) => b.pct - a.pct)
        .slice(0, TOP)
        .map((r) => ({ pct: r.pct, label: r.sym })),
    ),
  );
  out.push("");
}
console.log(out.join("\n"));
console.log(`perf data: ${data}`);
// V8's perf maps (/tmp/perf-<pid>.map) stay: `perf report -i` and `perf script -i` on this data need them.
