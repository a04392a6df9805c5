/** Linux /proc readers for whole-stack tests: child processes, resident memory, listening sockets. */
import { readdir, readFile, readlink } from "node:fs/promises";

export async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const task of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const text = await readFile(`/proc/${pid}/task/${task}/children`, "utf8").catch(() => "");
    out.push(...text.split(/\s+/).filter(Boolean).map(Number));
  }
  return out;
}

/** The pid and all its descendants. */
export async function processTree(pid: number): Promise<number[]> {
  const all = [pid];
  for (let i = 0; i < all.length; i++) all.push(...(await childPids(all[i]!)));
  return all;
}

export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)?.[1] ?? NaN);
  return kb * 1024;
}

/** Sockets in LISTEN state (TCP) or bound (UDP) that belong to `pid`. */
export async function listeningSockets(pid: number): Promise<string[]> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) inodes.add(m[1]!);
  }
  const found: string[] = [];
  for (const table of ["tcp", "tcp6", "udp", "udp6"]) {
    const text = await readFile(`/proc/${pid}/net/${table}`, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10) continue;
      const [, local, , state] = cols;
      const inode = cols[9]!;
      const listening = table.startsWith("tcp") ? state === "0A" : state === "07";
      if (listening && inodes.has(inode)) found.push(`${table} ${local}`);
    }
  }
  return found;
}

/** Number of open socket file descriptors of `pid`. */
export async function socketCount(pid: number): Promise<number> {
  let n = 0;
  for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
    if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")).startsWith("socket:")) n++;
  }
  return n;
}

/** User + system CPU seconds used so far by these processes (from /proc/<pid>/stat; clock ticks of 10 ms). */
export async function cpuSeconds(pids: number[]): Promise<number> {
  return await statCpuSeconds(pids.map((pid) => `/proc/${pid}/stat`));
}

/**
 * The same for only each process's main thread (/proc/<pid>/task/<pid>/stat): in Deno, the JavaScript event loop,
 * without its Workers, the runtime's I/O threads and V8's helpers.
 */
export async function mainThreadCpuSeconds(pids: number[]): Promise<number> {
  return await statCpuSeconds(pids.map((pid) => `/proc/${pid}/task/${pid}/stat`));
}

async function statCpuSeconds(paths: string[]): Promise<number> {
  let ticks = 0;
  for (const path of paths) {
    const stat = await readFile(path, "utf8").catch(() => "");
    // Fields after the parenthesised command name: state is field 3; utime and stime are fields 14 and 15.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(rest[11] ?? 0) + Number(rest[12] ?? 0);
  }
  return ticks / 100;
}

/** Pids of every process whose command name is `comm` (e.g. the PostgreSQL server's backends). */
export async function pidsNamed(comm: string): Promise<number[]> {
  const out: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const name = await readFile(`/proc/${entry}/comm`, "utf8").catch(() => "");
    if (name.trim() === comm) out.push(Number(entry));
  }
  return out;
}
