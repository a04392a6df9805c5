/** Agent logging: JSON lines on stderr, ids and sizes only. Keys, prompts and outputs are never logged. */
type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Log {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
}

export function createLog(level: Level = "info"): Log {
  const min = ORDER[level] ?? ORDER.info;
  const emit = (lvl: Level, event: string, fields: Record<string, unknown> = {}) => {
    if (ORDER[lvl] < min) return;
    const safe: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(fields)) safe[k] = v instanceof Error ? { name: v.name, message: v.message } : v;
    console.error(JSON.stringify({ t: new Date().toISOString(), level: lvl, proc: "agent", event, ...safe }));
  };
  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
  };
}
