/**
 * `npm run bench:<name> -- --vitess` (issue 12): the same benchmark twice in
 * one invocation, first on MariaDB directly, then through vtgate (a local
 * Vitess 24 cluster, tools/vitess/vttestserver.sh, keyspaces in 2 shards
 * each), and the two side by side. Each run is the benchmark's own script in
 * a child process, unchanged but for its database: under
 * STOCKROOM_TEST_VITESS every database it asks for is a keyspace of the
 * cluster's pool (services/common/testing testDatabaseUrl), so its raw
 * baseline goes through vtgate too. Each run writes
 * bench-results/<name>-mariadb.json and <name>-vitess.json; this writes
 * bench-results/<name>.json with both and the vitess/mariadb ratio of every
 * figure they share. STOCKROOM_BENCH_VITESS=mysql://… uses a running
 * cluster (started with --test-pool) instead of starting one.
 */
import { spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { vitessPoolDir } from "@stockroom/common/testing";
import { startVitess, stopVitess, TEST_POOL } from "../vitess/cluster.ts";
import { writeResults } from "./stats.ts";

const root = path.join(import.meta.dirname, "..", "..");

/** besideVitess runs when the benchmark was called with --vitess; it returns false otherwise (the benchmark then runs itself). */
export async function besideVitess(name: string, script: string): Promise<boolean> {
  if (!process.argv.includes("--vitess") || process.env["BENCH_RESULT_NAME"]) return false;
  const args = process.argv.slice(2).filter((a) => a !== "--vitess");
  console.log(`== ${name} on MariaDB (direct)`);
  await runChild(script, args, { BENCH_RESULT_NAME: `${name}-mariadb` });
  let url = process.env["STOCKROOM_BENCH_VITESS"];
  const cluster = url ? undefined : await startVitess(34574);
  url ??= cluster!.url;
  try {
    rmSync(vitessPoolDir(url), { recursive: true, force: true });
    console.log(`\n== ${name} through vtgate (${url}, 2 shards per keyspace)`);
    await runChild(script, args, {
      BENCH_RESULT_NAME: `${name}-vitess`,
      STOCKROOM_TEST_VITESS: url,
      STOCKROOM_TEST_VITESS_KEYSPACES: String(TEST_POOL),
    });
  } finally {
    if (cluster) await stopVitess(cluster.child);
  }
  const read = (suffix: string) => JSON.parse(readFileSync(path.join(root, "bench-results", `${name}-${suffix}.json`), "utf8"));
  const mariadb = read("mariadb");
  const vitess = read("vitess");
  const rows = compare(mariadb, vitess);
  console.log(`\n== ${name}: vtgate beside MariaDB (same machine, one invocation)`);
  const width = Math.max(...rows.map((r) => r.figure.length));
  console.log(`${"figure".padEnd(width)}  ${"mariadb".padStart(12)}  ${"vitess".padStart(12)}  ${"vitess/mariadb".padStart(14)}`);
  for (const r of rows) {
    console.log(`${r.figure.padEnd(width)}  ${fmt(r.mariadb).padStart(12)}  ${fmt(r.vitess).padStart(12)}  ${fmt(r.ratio).padStart(14)}`);
  }
  const file = writeResults(name, { mode: "vitess", mariadb, vitess, ratios: Object.fromEntries(rows.map((r) => [r.figure, r.ratio])) });
  console.log(`\nresults: ${path.relative(root, file)}`);
  return true;
}

function runChild(script: string, args: string[], env: Record<string, string>): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: root, env: { ...process.env, ...env }, stdio: "inherit" });
    child.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${path.basename(script)} exited ${code}`))));
  });
}

/** The figures worth comparing: latencies, rates, times and CPU, wherever the benchmark put them. */
const FIGURE = /p50|p90|p99|median|mean|perSecond|PerSecond|ms$|Ms$|seconds|Seconds|cpu|Cpu|throughput|rate/;

function compare(a: unknown, b: unknown, prefix = ""): { figure: string; mariadb: number; vitess: number; ratio: number }[] {
  if (typeof a === "number" && typeof b === "number") {
    return FIGURE.test(prefix) ? [{ figure: prefix, mariadb: a, vitess: b, ratio: a === 0 ? Number.NaN : b / a }] : [];
  }
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return [];
  const out: { figure: string; mariadb: number; vitess: number; ratio: number }[] = [];
  for (const key of Object.keys(a)) {
    if (key in b && !["environment", "machine", "host"].includes(key)) {
      out.push(...compare((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], prefix ? `${prefix}.${key}` : key));
    }
  }
  return out;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return "–";
  return Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2);
}
