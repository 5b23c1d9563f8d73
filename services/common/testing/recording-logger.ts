import type { Logger } from "../src/observe/log.ts";

export interface LogLine {
  level: "info" | "warn" | "error";
  msg: string;
  fields: Record<string, unknown>;
}

/** recordingLogger keeps what a component logs, for tests that assert on its lines. */
export function recordingLogger(): Logger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  const at =
    (level: LogLine["level"]) =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      void lines.push({ level, msg, fields });
  return { lines, info: at("info"), warn: at("warn"), error: at("error") };
}
