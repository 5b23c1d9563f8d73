import { spawn } from "node:child_process";

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together, in the order they came. */
  output: string;
}

/**
 * runProcess runs a command to its end (a tool, npm, node) and returns its exit code and what it printed;
 * onOutput sees everything printed so far each time more comes.
 */
export function runProcess(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string>; onOutput?: (output: string) => void } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
    const result: ProcessResult = { code: null, stdout: "", stderr: "", output: "" };
    child.stdout.on("data", (d: Buffer) => ((result.stdout += d), (result.output += d), options.onOutput?.(result.output)));
    child.stderr.on("data", (d: Buffer) => ((result.stderr += d), (result.output += d), options.onOutput?.(result.output)));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ ...result, code }));
  });
}
