/** Logger writes one JSON object per line to stderr; fields never hold secrets. */
export interface Logger {
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/** createLogger returns a logger tagged with component; level "silent" drops everything. */
export function createLogger(component: string, level: "info" | "warn" | "error" | "silent" = "info"): Logger {
  const rank = { info: 0, warn: 1, error: 2, silent: 3 }[level];
  const write = (lvl: "info" | "warn" | "error", r: number) => (msg: string, fields?: Record<string, unknown>) => {
    if (r < rank) return;
    const entry: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, component, msg, ...fields };
    for (const [k, v] of Object.entries(entry)) {
      if (v instanceof Error) entry[k] = { name: v.name, message: v.message, stack: v.stack };
    }
    process.stderr.write(`${JSON.stringify(entry)}\n`);
  };
  return { info: write("info", 0), warn: write("warn", 1), error: write("error", 2) };
}
