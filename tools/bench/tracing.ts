/**
 * `npm run bench:tracing`: what tracing costs, with it off and on,
 * alternating. "On" is 100% sampling (OTEL_TRACES_SAMPLER=always_on)
 * exported over OTLP/HTTP protobuf to a sink in this process, with a span
 * queue large enough that no span is dropped: every span is paid for.
 * Metrics and the SLA recorder are on in both modes, so the difference is
 * tracing alone. Target: at most 10% of throughput lost.
 *
 * - catalog: the catalog API as its own process (as bench:catalog runs it),
 *   UpdateProduct with etags at concurrency 16: calls/s, p99, and the
 *   server's CPU time per call (from /proc), which a machine busy with other
 *   work disturbs far less than throughput.
 * - bulk: tools/bench/bulk.ts itself (bulk API + 2 worker processes),
 *   BENCH_ROWS rows (default 100000): items/s end to end, and the CPU the
 *   API spent ingesting and the workers spent applying, per 1,000 items.
 *
 * BENCH_TRACING_ROUNDS off/on pairs (default 3 for the catalog, 1 for bulk),
 * BENCH_CALLS measured calls per catalog run (default 3000),
 * BENCH_TRACING_ONLY=catalog|bulk runs one. bulk.ts's own results file is
 * restored afterwards; this writes bench-results/tracing.json.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { readInt } from "@stockroom/common";
import { startOtlpReceiver } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { startServerProcess } from "./server-process.ts";
import { round, runLoad, summarize, table, writeResults } from "./stats.ts";

const root = path.join(import.meta.dirname, "..", "..");
const only = process.env["BENCH_TRACING_ONLY"];
const catalogRounds = readInt(process.env, "BENCH_TRACING_ROUNDS", 3, 1, 20);
const bulkRounds = readInt(process.env, "BENCH_TRACING_ROUNDS", 1, 1, 20);
const CALLS = readInt(process.env, "BENCH_CALLS", 3000, 100, 1_000_000);
const ROWS = process.env["BENCH_ROWS"] ?? "100000";
const CONCURRENCY = 16;
const WARMUP = 300;
const TARGET_LOSS = 0.1;
const TICKS_PER_S = 100;

const sink = await startOtlpReceiver({ keep: false });
const tracingEnv = {
  OTEL_EXPORTER_OTLP_ENDPOINT: sink.url,
  OTEL_TRACES_SAMPLER: "always_on",
  OTEL_BSP_MAX_QUEUE_SIZE: "100000",
  OTEL_BSP_SCHEDULE_DELAY: "1000",
};
const withoutOtel = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("OTEL_"))) as Record<string, string>;

interface Run {
  bench: "catalog" | "bulk";
  tracing: boolean;
  round: number;
  /** Calls/s (catalog) or items/s end to end (bulk). */
  throughput: number;
  /** Server CPU ms per call (catalog), or API + worker CPU s per 1,000 items (bulk). */
  cpu: number;
  p99Ms?: number;
  /** OTLP kilobytes the sink received during the run. */
  exportedKb: number;
}

/** cpuTicks is utime + stime of a process (fields 14 and 15 of /proc/<pid>/stat). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

async function catalogRun(tracing: boolean): Promise<Omit<Run, "bench" | "tracing" | "round" | "exportedKb">> {
  const server = await startServerProcess({
    name: "bench_tracing",
    entrypoint: path.join(root, "services", "catalog", "src", "main.ts"),
    migrations: [catalogMigrations],
    env: tracing ? tracingEnv : {},
  });
  try {
    const client = server.client(CatalogService);
    const slots = await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, i) => {
        const { product } = await client.createProduct({
          product: {
            sku: `TRACE-${i}`,
            title: `Product ${i}`,
            price: { currencyCode: "EUR", minorUnits: 1000n },
            stock: 10,
            attributes: { color: "red" },
          },
        });
        return { sku: `TRACE-${i}`, etag: product!.etag, price: 1000 };
      }),
    );
    const call = async (w: number) => {
      const slot = slots[w]!;
      slot.price++;
      const { product } = await client.updateProduct({
        product: { sku: slot.sku, etag: slot.etag, price: { currencyCode: "EUR", minorUnits: BigInt(slot.price) } },
        updateMask: { paths: ["price"] },
      });
      slot.etag = product!.etag;
    };
    await runLoad({ calls: WARMUP, concurrency: CONCURRENCY, call });
    const ticks = cpuTicks(server.pid);
    const result = await runLoad({ calls: CALLS, concurrency: CONCURRENCY, call });
    const cpuMs = ((cpuTicks(server.pid) - ticks) / TICKS_PER_S) * 1000;
    if (result.failures > 0) throw new Error(`${result.failures} calls failed: ${result.errors.join("; ")}`);
    const s = summarize(result);
    return { throughput: round(s.throughput, 1), p99Ms: round(s.p99Ms, 2), cpu: round(cpuMs / CALLS, 3) };
  } finally {
    await server.stop();
  }
}

async function bulkRun(tracing: boolean): Promise<Omit<Run, "bench" | "tracing" | "round" | "exportedKb">> {
  const file = path.join(root, "bench-results", "bulk.json");
  const previous = existsSync(file) ? readFileSync(file) : undefined;
  try {
    await promisify(execFile)(process.execPath, [path.join(root, "tools", "bench", "bulk.ts")], {
      cwd: root,
      env: { ...withoutOtel, ...(tracing ? tracingEnv : {}), BENCH_ROWS: ROWS, BENCH_WORKERS: "2" },
      maxBuffer: 64 * 1024 * 1024,
    });
    const r = JSON.parse(readFileSync(file, "utf8"));
    const run = r.runs[0];
    if (run.state !== "SUCCEEDED") throw new Error(`the bulk job ended ${run.state}`);
    const cpuS = (run.processes as { label: string; phases: Record<string, { cpuS: number }> }[])
      .filter((p) => p.label === "bulk API" || p.label.startsWith("worker"))
      .reduce((n, p) => n + (p.phases["ingest"]?.cpuS ?? 0) + (p.phases["apply"]?.cpuS ?? 0), 0);
    return { throughput: run.itemsPerS.endToEnd, cpu: round((cpuS / Number(ROWS)) * 1000, 3) };
  } finally {
    if (previous) writeFileSync(file, previous);
  }
}

const runs: Run[] = [];
async function measure(bench: "catalog" | "bulk", tracing: boolean, roundNo: number): Promise<void> {
  const before = sink.stats().bytes;
  const r = bench === "catalog" ? await catalogRun(tracing) : await bulkRun(tracing);
  const run: Run = { bench, tracing, round: roundNo, ...r, exportedKb: Math.round((sink.stats().bytes - before) / 1024) };
  runs.push(run);
  const unit = bench === "catalog" ? ["calls/s", "server CPU ms/call"] : ["items/s", "CPU s per 1,000 items"];
  console.log(
    `  ${bench} tracing ${tracing ? "on " : "off"} round ${roundNo}: ${run.throughput} ${unit[0]}, ${run.cpu} ${unit[1]}` +
      `${run.p99Ms !== undefined ? `, p99 ${run.p99Ms} ms` : ""}, exported ${run.exportedKb} KB`,
  );
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

try {
  console.log(`tracing overhead: off/on pairs, 100% sampling to an OTLP sink at ${sink.url}`);
  // Alternating off/on spreads the machine's drift (other load, MariaDB's buffer pool) over both modes.
  if (only !== "bulk") for (let i = 1; i <= catalogRounds; i++) for (const on of [false, true]) await measure("catalog", on, i);
  if (only !== "catalog") for (let i = 1; i <= bulkRounds; i++) for (const on of [false, true]) await measure("bulk", on, i);

  const summary = (["catalog", "bulk"] as const).flatMap((bench) => {
    const of = (on: boolean, k: "throughput" | "cpu") => runs.filter((r) => r.bench === bench && r.tracing === on).map((r) => r[k]);
    if (of(false, "throughput").length === 0) return [];
    const throughputLoss = 1 - median(of(true, "throughput")) / median(of(false, "throughput"));
    const cpuAdded = median(of(true, "cpu")) / median(of(false, "cpu")) - 1;
    return [
      {
        bench,
        throughputOff: median(of(false, "throughput")),
        throughputOn: median(of(true, "throughput")),
        throughputLoss: round(throughputLoss, 3),
        cpuOff: median(of(false, "cpu")),
        cpuOn: median(of(true, "cpu")),
        cpuAdded: round(cpuAdded, 3),
        pass: throughputLoss <= TARGET_LOSS,
      },
    ];
  });
  console.log(
    "\n" +
      table(
        ["benchmark (medians)", "throughput off", "on", "lost", "CPU off", "on", "added", `target: <= ${TARGET_LOSS * 100}% lost`],
        summary.map((s) => [
          s.bench,
          s.throughputOff,
          s.throughputOn,
          `${(s.throughputLoss * 100).toFixed(1)}%`,
          s.cpuOff,
          s.cpuOn,
          `${(s.cpuAdded * 100).toFixed(1)}%`,
          s.pass ? "PASS" : "MISS",
        ]),
      ),
  );
  console.log("CPU: server ms per call (catalog); bulk API + workers s per 1,000 items (bulk)");
  const file = writeResults("tracing", {
    catalogCalls: CALLS,
    concurrency: CONCURRENCY,
    bulkRows: Number(ROWS),
    sampler: "always_on",
    runs,
    summary,
  });
  console.log(`\nwrote ${file}`);
} catch (error) {
  console.error("tracing bench failed:", error);
  process.exitCode = 1;
} finally {
  await sink.close();
}
