/** Linux /proc readers the benchmarks use to attribute CPU to processes. */
import { readdirSync, readFileSync } from "node:fs";

/** TICKS_PER_S is the kernel's USER_HZ, 100 on Linux. */
export const TICKS_PER_S = 100;

/** cpuTicks is utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat). */
export function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** findProcesses lists local processes whose command name is one of names (MariaDB, nats-server). */
export function findProcesses(names: Record<string, string>): { label: string; pid: number }[] {
  const found: { label: string; pid: number }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, "utf8").trim();
      const label = names[comm];
      if (label) found.push({ label, pid: Number(entry) });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** procStatus is a memory figure of /proc/<pid>/status (VmRSS: resident now; VmHWM: the peak), in MB. */
export function procStatus(pid: number, key: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : undefined;
  } catch {
    return undefined;
  }
}
