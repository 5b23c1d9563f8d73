/**
 * Shared benchmark helpers: a closed-loop load runner, latency percentiles,
 * a plain-text table and the JSON results file (bench-results/<name>.json).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface LoadResult {
  /** Latencies of the successful calls, in milliseconds. */
  latencies: number[];
  failures: number;
  /** The first few failure messages, to explain a non-zero failure count. */
  errors: string[];
  wallMs: number;
  /** CPU time (user + system) this whole process used meanwhile: server and client when both run here. */
  cpuMs: number;
}

/**
 * runLoad makes `calls` calls from `concurrency` workers, each starting its
 * next call as soon as its previous one returns; with minMs, the workers go
 * on past `calls` until that long has passed. call(worker) is given the
 * worker's index, so each worker can keep its own state (e.g. its own row).
 */
export async function runLoad(options: {
  calls: number;
  concurrency: number;
  call: (worker: number) => Promise<void>;
  minMs?: number;
}): Promise<LoadResult> {
  const latencies: number[] = [];
  const errors: string[] = [];
  let failures = 0;
  let started = 0;
  const until = performance.now() + (options.minMs ?? 0);
  const worker = async (index: number) => {
    while (started < options.calls || performance.now() < until) {
      started++;
      const t0 = performance.now();
      try {
        await options.call(index);
        latencies.push(performance.now() - t0);
      } catch (error) {
        failures++;
        if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
      }
    }
  };
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => worker(i)));
  const cpu = process.cpuUsage(cpu0);
  return { latencies, failures, errors, wallMs: performance.now() - t0, cpuMs: (cpu.user + cpu.system) / 1000 };
}

export interface Summary {
  calls: number;
  failures: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  meanMs: number;
  /** Successful calls per second of wall time. */
  throughput: number;
  wallMs: number;
  /** This process's CPU time per call (see LoadResult.cpuMs). */
  cpuMsPerCall: number;
}

/** maxOf is the largest value of the items (0 if none): without spreading them as arguments, which overflows the stack past ~100,000. */
export function maxOf<T>(items: readonly T[], value: (item: T) => number): number {
  let max = 0;
  for (const item of items) max = Math.max(max, value(item));
  return max;
}

/** median of the values (the mean of the middle two for an even count; NaN if empty). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** percentile returns the nearest-rank p-th percentile of ascending values (NaN if empty). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(result: LoadResult): Summary {
  const sorted = [...result.latencies].sort((a, b) => a - b);
  const sum = sorted.reduce((a, b) => a + b, 0);
  return {
    calls: sorted.length + result.failures,
    failures: result.failures,
    p50Ms: round(percentile(sorted, 50)),
    p90Ms: round(percentile(sorted, 90)),
    p99Ms: round(percentile(sorted, 99)),
    maxMs: round(sorted.at(-1) ?? NaN),
    meanMs: round(sum / sorted.length),
    throughput: round((sorted.length / result.wallMs) * 1000, 1),
    wallMs: round(result.wallMs, 1),
    cpuMsPerCall: round(result.cpuMs / (sorted.length + result.failures)),
  };
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** table renders rows as left-aligned columns under a header. */
export function table(header: string[], rows: (string | number)[][]): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, c) => Math.max(...cells.map((r) => (r[c] ?? "").length)));
  const line = (r: string[]) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join("  ")
      .trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...cells.slice(1).map(line)].join("\n");
}

/** environment describes where a benchmark ran, for comparing results files. */
export function environment() {
  const cpus = os.cpus();
  return {
    node: process.version,
    date: new Date().toISOString(),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    totalMemoryBytes: os.totalmem(),
    hostname: os.hostname(),
  };
}

/** writeResults writes bench-results/<name>.json (git-ignored) and returns its path. */
export function writeResults(name: string, results: object): string {
  const dir = path.join(import.meta.dirname, "..", "..", "bench-results");
  mkdirSync(dir, { recursive: true });
  // BENCH_RESULT_NAME: a run of besideVitess (beside-vitess.ts), which names each of its two runs.
  const file = path.join(dir, `${process.env["BENCH_RESULT_NAME"] ?? name}.json`);
  writeFileSync(file, `${JSON.stringify({ benchmark: name, ...environment(), ...results }, null, 2)}\n`);
  return file;
}

/** tally counts one more of key in counts. */
export function tally<K>(counts: Map<K, number>, key: K, n = 1): void {
  counts.set(key, (counts.get(key) ?? 0) + n);
}
