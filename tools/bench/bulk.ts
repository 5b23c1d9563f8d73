/**
 * `npm run bench:bulk`: a bulk CSV through the whole pipeline (gRPC upload →
 * parse/validate → stage → JetStream → workers → products), with 1, 2 and 4
 * worker processes, against the raw floor on the same MariaDB: LOAD DATA
 * LOCAL INFILE of the same file into a staging table plus one INSERT …
 * SELECT … ON DUPLICATE KEY UPDATE into products.
 *
 * Every pipeline run gets a fresh database, its own JetStream stream, subject
 * prefix and durable, the bulk API process (services/bulk/src/main.ts) and N
 * worker processes (services/bulk/src/worker-main.ts), as Nomad runs them.
 * The file is generated once (all rows valid, fixed seed) and uploaded from
 * this process with UploadBulkFile (client streaming). Phases: upload +
 * validate + stage (until the call returns), apply (until WatchBulkJob shows
 * a final state; it polls every 250 ms), end to end. Each child's CPU time,
 * bytes written and RSS are sampled from /proc per phase (MariaDB's and
 * nats-server's too, when they run here), with the machine's busy / iowait
 * cores and MariaDB's server-wide counters (row lock waits, deadlocks, redo);
 * peak RSS is VmHWM read just before a child is stopped. The raw path loads
 * the generated file as is; turning prices into minor units happens in its
 * (timed) INSERT … SELECT. Both paths must end with the same products: a
 * checksum of every product's content is compared.
 *
 * BENCH_ROWS (default 500000), BENCH_WORKERS (default "1,2,4"),
 * BENCH_PROFILE=1 writes CPU profiles of the API and worker processes to
 * bench-results/profiles/. BULK_* settings in the environment reach the
 * children (e.g. BULK_JOB_WINDOW, BULK_WORKER_CONCURRENCY).
 * Exits non-zero on errors only (a failed call, a job not SUCCEEDED), never
 * on a missed target.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createConnection, createPool, type Connection, type Pool, type ResultSetHeader, type RowDataPacket } from "mysql2/promise";
import { BulkJobState, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { parseBulkConfig, ensureChunkQueue, bulkMigrations } from "@stockroom/bulk";
import { catalogMigrations } from "@stockroom/catalog";
import { createMerchant } from "@stockroom/common/rpc";
import { parseApiConfig, readInt, currencyDigits, newUlid } from "@stockroom/common";
import { commonMigrations, createDatabase, dropDatabase, ensureDatabase, migrateToLatest, type CommonTables } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { onVitess, testDatabaseUrl } from "@stockroom/common/testing";
import { cpuTicks, findProcesses, TICKS_PER_S } from "./procfs.ts";
import {
  apiMain,
  FINAL_STATES as FINAL,
  generateCsv,
  root,
  startWorker,
  stopChild,
  until,
  uploadRequests,
  type FileInfo,
} from "./bulk-processes.ts";
import { startServerProcess, type ServerProcess } from "./server-process.ts";
import { round, table, writeResults } from "./stats.ts";
import { besideVitess } from "./beside-vitess.ts";

// --vitess: this benchmark on MariaDB and through vtgate, side by side (beside-vitess.ts).
if (await besideVitess("bulk", import.meta.filename)) process.exit(0);

const ROWS = readInt(process.env, "BENCH_ROWS", 500_000, 1, 10_000_000);
const WORKER_COUNTS = (process.env["BENCH_WORKERS"] ?? "1,2,4").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`BENCH_WORKERS must list worker counts from 1 to 64, not "${s}"`);
  return n;
});
const SEED = 42;
const TARGET_RATIO = 3;
const TARGET_E2E_S = 30;
const TARGET_ROWS = 500_000;
const TARGET_API_RSS_MB = 300;
/** How long one job may take before the run is called failed. */
const JOB_TIMEOUT_MS = 20 * 60_000;
const SAMPLE_MS = 200;
/** The bulk API's V8 heap settings, as nomad/bulk.nomad.hcl runs it (BENCH_API_NODE_ARGS="" runs V8's defaults). */
const API_NODE_ARGS = (process.env["BENCH_API_NODE_ARGS"] ?? "--max-old-space-size=256 --max-semi-space-size=8").split(" ").filter(Boolean);

const apiConfig = parseApiConfig(process.env);
// A file above the item limit would fail as a whole; the children then get a limit that fits.
const childEnv: Record<string, string> = ROWS > parseBulkConfig(process.env).limits.maxItems ? { BULK_MAX_ITEMS: String(ROWS) } : {};
const bulkConfig = parseBulkConfig({ ...process.env, ...childEnv });

// ---- /proc sampling ------------------------------------------------------------

interface Watched {
  label: string;
  pid: number;
}

interface ProcPhase {
  /** CPU seconds (user + system) the process used in the phase. */
  cpuS: number;
  /** Highest VmRSS seen in the phase (sampled every SAMPLE_MS), MB. */
  peakRssMb: number;
  /** Bytes the process had written to storage in the phase (/proc/<pid>/io write_bytes), MB. */
  writtenMb?: number;
}

interface ProcReport {
  label: string;
  pid: number;
  phases: Record<string, ProcPhase>;
  /** VmHWM (peak RSS over the process's life) just before it was stopped, MB; not for shared servers. */
  vmHwmMb?: number;
}

function procStatus(pid: number, key: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? round(Number(m[1]) / 1024, 1) : undefined;
  } catch {
    return undefined;
  }
}

/** childRunning finds this process's child running script (startServerProcess does not tell its pid). */
function childRunning(script: string): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== process.pid) continue;
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").includes(script)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no child process runs ${script}`);
}

/** MachinePhase is the whole machine in one phase (/proc/stat), in cores: 2.0 is both cores of this machine. */
interface MachinePhase {
  wallS: number;
  busyCores: number;
  iowaitCores: number;
  idleCores: number;
}

/** machineTicks reads the aggregate cpu line of /proc/stat: busy (user..softirq, steal), iowait, idle. */
function machineTicks(): { busy: number; iowait: number; idle: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = f;
  return { busy: user + nice + system + irq + softirq + steal, iowait, idle };
}

/** writtenBytes is what a process made the kernel write to storage (/proc/<pid>/io; readable for own or root). */
function writtenBytes(pid: number): number | undefined {
  try {
    const m = /^write_bytes: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** createMonitor accounts CPU time, bytes written and peak RSS of processes, and the machine's CPU, per phase. */
function createMonitor(watched: Watched[], firstPhase: string) {
  let phase = firstPhase;
  const reports: ProcReport[] = watched.map((w) => ({ ...w, phases: {} }));
  const machine: Record<string, MachinePhase> = {};
  let ticks = watched.map((w) => cpuTicks(w.pid) ?? 0);
  let written = watched.map((w) => writtenBytes(w.pid));
  let machineAt = machineTicks();
  let phaseStart = performance.now();
  const slot = (r: ProcReport) => (r.phases[phase] ??= { cpuS: 0, peakRssMb: 0 });
  const sample = () => {
    for (const r of reports) {
      const rss = procStatus(r.pid, "VmRSS");
      if (rss !== undefined) slot(r).peakRssMb = Math.max(slot(r).peakRssMb, rss);
    }
  };
  const account = () => {
    sample();
    const now = reports.map((r, i) => cpuTicks(r.pid) ?? ticks[i]!);
    const nowWritten = reports.map((r) => writtenBytes(r.pid));
    reports.forEach((r, i) => {
      const p = slot(r);
      p.cpuS = round(p.cpuS + (now[i]! - ticks[i]!) / TICKS_PER_S, 2);
      const before = written[i];
      const after = nowWritten[i];
      if (before !== undefined && after !== undefined) p.writtenMb = round((p.writtenMb ?? 0) + (after - before) / 1024 / 1024, 1);
    });
    ticks = now;
    written = nowWritten;
    const m = machineTicks();
    const wallS = (performance.now() - phaseStart) / 1000;
    const cores = (t: number) => (wallS > 0 ? round(t / TICKS_PER_S / wallS, 2) : 0);
    machine[phase] = {
      wallS: round(wallS),
      busyCores: cores(m.busy - machineAt.busy),
      iowaitCores: cores(m.iowait - machineAt.iowait),
      idleCores: cores(m.idle - machineAt.idle),
    };
    machineAt = m;
    phaseStart = performance.now();
  };
  sample();
  const timer = setInterval(sample, SAMPLE_MS);
  timer.unref();
  return {
    /** phase closes the current phase and starts the next. */
    phase(next: string) {
      account();
      phase = next;
    },
    /** hwm records VmHWM of the given pids (call just before stopping them). */
    hwm(pids: number[]) {
      for (const r of reports) if (pids.includes(r.pid)) r.vmHwmMb = procStatus(r.pid, "VmHWM");
    },
    stop(): { processes: ProcReport[]; machine: Record<string, MachinePhase> } {
      account();
      clearInterval(timer);
      return { processes: reports, machine };
    },
  };
}

function sharedServers(): Watched[] {
  return findProcesses({ mariadbd: "mariadb", mysqld: "mariadb", "nats-server": "nats-server" });
}

// ---- the file ------------------------------------------------------------------------

// ---- the raw floor ---------------------------------------------------------------------

interface DatabaseInfo {
  version: string;
  innodbBufferPoolMb: number;
  innodbFlushLogAtTrxCommit: number;
  logBin: boolean;
}

interface RawResult {
  database: DatabaseInfo;
  loadS: number;
  insertSelectS: number;
  totalS: number;
  itemsPerS: number;
  localInfile: string;
  processes: ProcReport[];
  machine: Record<string, MachinePhase>;
  /** MariaDB's counters per step (server-wide deltas). */
  status: Record<string, Counters>;
  tables: TableSize[];
  checksum: Checksum;
}

interface Checksum {
  rows: number;
  crc: string;
}

interface TableSize {
  table: string;
  rows: number;
  mb: number;
}

/** The staging table's columns for the generator's columns, in file order. */
function stagingColumn(column: string): string {
  return column.startsWith("attr.") ? `attr_${column.slice("attr.".length)}` : column;
}

/**
 * runRaw loads the same CSV file, unchanged, with LOAD DATA LOCAL INFILE into
 * a staging table and upserts it into products with one INSERT … SELECT, on a
 * fresh database with the service's schema. Prices become minor units in the
 * SELECT (inside the timing); product ids are a ULID time prefix plus the
 * staging row number in base 32.
 */
async function runRaw(file: FileInfo): Promise<RawResult> {
  // Through vtgate LOAD DATA LOCAL INFILE cannot run (refused on a sharded keyspace; on one shard the tablet
  // cannot read the client's file): with --vitess the raw floor stays on MariaDB directly, beside the pipeline
  // through vtgate.
  const databaseUrl = onVitess
    ? `${process.env["TEST_DATABASE_URL"] ?? "mysql://root@127.0.0.1:3306/"}t_bench_bulk_raw_${randomBytes(4).toString("hex")}`
    : testDatabaseUrl("bench_bulk_raw");
  await ensureDatabase(databaseUrl);
  let conn: Connection | undefined;
  try {
    const db = createDatabase<CommonTables>({ url: databaseUrl, poolSize: 1 });
    let merchantId: string;
    try {
      await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
      merchantId = (await createMerchant(db, "Raw benchmark merchant")).merchantId;
    } finally {
      await db.destroy();
    }
    conn = await createConnection({
      uri: databaseUrl,
      timezone: "Z",
      charset: "utf8mb4",
      supportBigNumbers: true,
      infileStreamFactory: () => createReadStream(file.path, { highWaterMark: 1024 * 1024 }),
    });
    // MariaDB allows LOCAL INFILE by default (MySQL 8 does not); the client must ask for it too (mysql2 does).
    const [flag] = await conn.query<RowDataPacket[]>("SELECT @@GLOBAL.local_infile AS v");
    let localInfile = String(flag[0]!["v"]) === "1" ? "ON" : "OFF";
    const [vars] = await conn.query<RowDataPacket[]>(
      "SELECT VERSION() AS v, @@innodb_buffer_pool_size AS pool, @@innodb_flush_log_at_trx_commit AS flush, @@log_bin AS bin",
    );
    const database: DatabaseInfo = {
      version: String(vars[0]!["v"]),
      innodbBufferPoolMb: Number(vars[0]!["pool"]) / 1024 / 1024,
      innodbFlushLogAtTrxCommit: Number(vars[0]!["flush"]),
      logBin: Number(vars[0]!["bin"]) === 1,
    };
    if (localInfile === "OFF") {
      await conn.query("SET GLOBAL local_infile = 1");
      localInfile = "OFF (turned ON for the run with SET GLOBAL local_infile = 1, then back OFF)";
    }
    const columns = file.columns.map(stagingColumn);
    const text = (c: string) => (c === "description" ? "TEXT" : "VARCHAR(1000)");
    await conn.query(
      `CREATE TABLE raw_staging (row_no INT NOT NULL AUTO_INCREMENT PRIMARY KEY, ${columns.map((c) => `\`${c}\` ${text(c)} NULL`).join(", ")})
       ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
    );
    const attrs = file.columns.filter((c) => c.startsWith("attr."));
    const factor = `CASE currency ${["EUR", "USD", "JPY", "BHD"].map((c) => `WHEN '${c}' THEN ${10 ** currencyDigits(c)}`).join(" ")} END`;
    const idPrefix = newUlid().slice(0, 10);
    const servers = sharedServers();
    const monitor = createMonitor([...servers, { label: "bench (client)", pid: process.pid }], "load");

    const s0 = await dbStatus(conn);
    const t0 = performance.now();
    const [loaded] = await conn.query<ResultSetHeader>(
      `LOAD DATA LOCAL INFILE 'bulk.csv' INTO TABLE raw_staging CHARACTER SET utf8mb4
       FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' ESCAPED BY ''
       LINES TERMINATED BY '\\n' IGNORE 1 LINES (${columns.map((c) => `\`${c}\``).join(", ")})`,
    );
    const t1 = performance.now();
    monitor.phase("insert-select");
    const s1 = await dbStatus(conn);
    const [upserted] = await conn.query<ResultSetHeader>(
      `INSERT INTO products (merchant_id, sku, product_id, title, description, price_minor, currency, stock, status,
         attributes, version, created_at, updated_at)
       SELECT ?, sku, CONCAT(?, LPAD(CONV(row_no, 10, 32), 16, '0')), title, description,
         ROUND(CAST(price AS DECIMAL(20, 4)) * ${factor}), currency, CAST(stock AS SIGNED), status,
         JSON_OBJECT(${attrs.map((a) => `'${a.slice("attr.".length)}', \`${stagingColumn(a)}\``).join(", ")}), 1, NOW(3), NOW(3)
       FROM raw_staging ORDER BY row_no
       ON DUPLICATE KEY UPDATE title = VALUES(title), description = VALUES(description), price_minor = VALUES(price_minor),
         currency = VALUES(currency), stock = VALUES(stock), status = VALUES(status), attributes = VALUES(attributes),
         version = version + 1, updated_at = VALUES(updated_at)`,
      [merchantId, idPrefix],
    );
    const t2 = performance.now();
    const { processes, machine } = monitor.stop();
    const s2 = await dbStatus(conn);
    if (localInfile.startsWith("OFF")) await conn.query("SET GLOBAL local_infile = 0");

    if (loaded.affectedRows !== ROWS || loaded.warningStatus > 0) {
      const [warnings] = await conn.query<RowDataPacket[]>("SHOW WARNINGS LIMIT 5");
      throw new Error(
        `LOAD DATA loaded ${loaded.affectedRows} rows of ${ROWS} with ${loaded.warningStatus} warnings: ${JSON.stringify(warnings)}`,
      );
    }
    if (upserted.affectedRows !== ROWS || upserted.warningStatus > 0) {
      throw new Error(`INSERT … SELECT affected ${upserted.affectedRows} rows of ${ROWS} with ${upserted.warningStatus} warnings`);
    }
    const totalS = (t2 - t0) / 1000;
    return {
      database,
      loadS: round((t1 - t0) / 1000),
      insertSelectS: round((t2 - t1) / 1000),
      totalS: round(totalS),
      itemsPerS: Math.round(ROWS / totalS),
      localInfile,
      processes,
      machine,
      status: { load: statusDelta(s0, s1), "insert-select": statusDelta(s1, s2) },
      tables: await tableSizes(conn, ["raw_staging", "products"]),
      checksum: await productsChecksum(conn, merchantId),
    };
  } finally {
    await conn?.end();
    await dropDatabase(databaseUrl);
  }
}

/** productsChecksum summarizes a merchant's products (content, not ids or times), to compare both paths. */
async function productsChecksum(db: Connection | Pool, merchantId: string): Promise<Checksum> {
  const [rows] = await db.query<RowDataPacket[]>(
    `SELECT COUNT(*) AS n, CAST(SUM(CRC32(CONCAT_WS(0x1f, sku, title, description, price_minor, currency, stock, status,
       JSON_COMPACT(attributes), version))) AS CHAR) AS crc
     FROM products WHERE merchant_id = ?`,
    [merchantId],
  );
  return { rows: Number(rows[0]!["n"]), crc: String(rows[0]!["crc"]) };
}

/** tableSizes reads InnoDB's (estimated) row counts and data + index sizes after fresh statistics. */
async function tableSizes(db: Connection | Pool, tables: string[]): Promise<TableSize[]> {
  // One table per statement: vtgate parses ANALYZE TABLE of one table only.
  for (const t of tables) await db.query(`ANALYZE TABLE \`${t}\``);
  const [rows] = await db.query<RowDataPacket[]>(
    `SELECT table_name AS t, table_rows AS n, data_length + index_length AS bytes FROM information_schema.tables
     WHERE table_schema = DATABASE() AND table_name IN (?) ORDER BY table_name`,
    [tables],
  );
  return rows.map((r) => ({ table: String(r["t"]), rows: Number(r["n"]), mb: round(Number(r["bytes"]) / 1024 / 1024, 1) }));
}

/** STATUS are MariaDB's server-wide counters read around each phase (the machine is otherwise idle). */
const STATUS = {
  Questions: "statements",
  Com_commit: "commits",
  Innodb_row_lock_waits: "row lock waits",
  Innodb_row_lock_time: "row lock wait ms",
  Innodb_deadlocks: "deadlocks",
  Innodb_os_log_written: "redo MB",
  Innodb_data_written: "data MB written",
  Innodb_buffer_pool_pages_flushed: "pages flushed",
} as const;
type StatusName = keyof typeof STATUS;
type Counters = Record<string, number>;

async function dbStatus(db: Connection | Pool): Promise<Counters> {
  const [rows] = await db.query<RowDataPacket[]>("SHOW GLOBAL STATUS WHERE Variable_name IN (?)", [Object.keys(STATUS)]);
  return Object.fromEntries(rows.map((r) => [String(r["Variable_name"]), Number(r["Value"])]));
}

/** statusDelta is what the counters moved by, with bytes in MB, labelled as in STATUS. */
function statusDelta(before: Counters, after: Counters): Counters {
  return Object.fromEntries(
    (Object.keys(STATUS) as StatusName[]).map((k) => {
      const d = (after[k] ?? 0) - (before[k] ?? 0);
      return [STATUS[k], STATUS[k].includes("MB") ? round(d / 1024 / 1024, 1) : d];
    }),
  );
}

function statusTable(rows: { label: string; counters: Counters }[]): string {
  const names = Object.values(STATUS);
  return table(
    ["phase", ...names],
    rows.map((r) => [r.label, ...names.map((n) => int(r.counters[n] ?? 0))]),
  );
}

// ---- the pipeline --------------------------------------------------------------------------

interface PipelineResult {
  workers: number;
  jobId: string;
  state: string;
  /** Upload + parse/validate + stage: until UploadBulkFile returned. */
  ingestS: number;
  /** When this process had handed the last byte to the transport (flow control holds it back). */
  lastByteSentS: number;
  /** From the upload's return to the first applied chunk seen by WatchBulkJob. */
  firstChunkS: number | null;
  /** From the upload's return to the final state seen by WatchBulkJob. */
  applyS: number;
  endToEndS: number;
  itemsPerS: { ingest: number; apply: number; endToEnd: number };
  counts: Record<string, number>;
  chunks: number;
  processes: ProcReport[];
  machine: Record<string, MachinePhase>;
  /** MariaDB's counters per phase (server-wide deltas). */
  status: Record<string, Counters>;
  /** Warnings the workers logged, by message (e.g. a chunk delivery that failed and will be redelivered). */
  workerWarnings: Record<string, number>;
  tables: TableSize[];
  checksum: Checksum;
}

async function runPipeline(workerCount: number, file: FileInfo, nats: NatsClient, errors: string[]): Promise<PipelineResult> {
  const id = randomBytes(4).toString("hex");
  const queueEnv: Record<string, string> = {
    ...childEnv,
    BULK_STREAM: `BENCH_BULK_${id}`,
    BULK_SUBJECT_PREFIX: `bench.bulk.${id}`,
    BULK_DURABLE: `bench-bulk-${id}`,
  };
  const queue = parseBulkConfig({ ...process.env, ...queueEnv }).queue;
  // The stream exists before anyone publishes; the workers' own ensure is then a no-op.
  await ensureChunkQueue(nats.jsm, queue);
  let server: ServerProcess | undefined;
  let pool: Pool | undefined;
  const workers: ChildProcess[] = [];
  const warnings = new Map<string, number>();
  try {
    server = await startServerProcess({
      name: `bench_bulk_w${workerCount}`,
      entrypoint: apiMain,
      migrations: [catalogMigrations, bulkMigrations],
      env: queueEnv,
      nodeArgs: API_NODE_ARGS,
    });
    const apiPid = childRunning(apiMain);
    for (let i = 0; i < workerCount; i++) {
      const w = startWorker({ ...queueEnv, DATABASE_URL: server.databaseUrl, NATS_URL: apiConfig.natsUrl }, warnings);
      w.once("exit", (code, signal) => {
        if (w.killed) return;
        errors.push(`worker ${i + 1} of ${workerCount} exited on its own (code ${code}, signal ${signal})`);
      });
      workers.push(w);
    }
    // Every worker has a pull request waiting on the consumer: all are ready.
    await until(
      `${workerCount} workers to pull`,
      async () => ((await nats.jsm.consumers.info(queue.stream, queue.durable)).num_waiting >= workerCount ? true : undefined),
      30_000,
    );
    const watched: Watched[] = [
      { label: "bulk API", pid: apiPid },
      ...workers.map((w, i) => ({ label: `worker ${i + 1}`, pid: w.pid! })),
      ...sharedServers(),
      { label: "bench (client)", pid: process.pid },
    ];
    const client = server.client(BulkJobService);
    let lastByteAt = 0;
    const requests = () => uploadRequests(file.path, `bench-${id}`, () => (lastByteAt = performance.now()));

    pool = createPool({ uri: server.databaseUrl, connectionLimit: 1, timezone: "Z", supportBigNumbers: true, charset: "utf8mb4" });
    const s0 = await dbStatus(pool);
    const monitor = createMonitor(watched, "idle");
    monitor.phase("ingest");
    const t0 = performance.now();
    const { job: queued } = await client.uploadBulkFile(requests());
    const t1 = performance.now();
    monitor.phase("apply");
    const s1 = await dbStatus(pool);
    if (!queued || queued.state !== BulkJobState.QUEUED) {
      throw new Error(`the upload ended in state ${queued ? BulkJobState[queued.state] : "none"}: ${queued?.error}`);
    }
    let firstChunkAt: number | undefined;
    let final: BulkJob | undefined;
    // Not the call's timeoutMs: its timer outlives a stream ended early and would hold the process.
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new Error(`job ${queued.id} did not end within ${JOB_TIMEOUT_MS / 60_000} minutes`)),
      JOB_TIMEOUT_MS,
    );
    try {
      for await (const { job } of client.watchBulkJob({ jobId: queued.id }, { signal: deadline.signal })) {
        if (!job) continue;
        if (firstChunkAt === undefined && job.chunksDone > 0) firstChunkAt = performance.now();
        if (FINAL.has(job.state)) {
          final = job;
          break;
        }
      }
    } finally {
      clearTimeout(timer);
    }
    const t2 = performance.now();
    monitor.phase("after");
    const s2 = await dbStatus(pool);
    monitor.hwm([apiPid, ...workers.map((w) => w.pid!)]);
    if (!final) throw new Error(`job ${queued.id}: the watch ended before a final state`);
    if (final.state !== BulkJobState.SUCCEEDED) {
      errors.push(`${workerCount} workers: job ${final.id} ended ${BulkJobState[final.state]} (${final.error || "no error"})`);
    }
    for (const w of workers) await stopChild(w);
    const { processes, machine } = monitor.stop();

    const c = final.counts!;
    const ingestS = (t1 - t0) / 1000;
    const applyS = (t2 - t1) / 1000;
    return {
      workers: workerCount,
      jobId: final.id,
      state: BulkJobState[final.state]!,
      ingestS: round(ingestS),
      lastByteSentS: round((lastByteAt - t0) / 1000),
      firstChunkS: firstChunkAt === undefined ? null : round((firstChunkAt - t1) / 1000),
      applyS: round(applyS),
      endToEndS: round(ingestS + applyS),
      itemsPerS: { ingest: Math.round(ROWS / ingestS), apply: Math.round(ROWS / applyS), endToEnd: Math.round(ROWS / (ingestS + applyS)) },
      counts: Object.fromEntries(
        (["total", "valid", "invalid", "applied", "unchanged", "conflict", "failed"] as const).map((k) => [k, Number(c[k])]),
      ),
      chunks: final.chunkCount,
      processes,
      machine,
      status: { ingest: statusDelta(s0, s1), apply: statusDelta(s1, s2) },
      workerWarnings: Object.fromEntries(warnings),
      tables: await tableSizes(pool, ["products", "product_changes", "outbox_events", "bulk_job_items", "bulk_job_chunks"]),
      checksum: await productsChecksum(pool, server.merchantId),
    };
  } finally {
    for (const w of workers) await stopChild(w);
    await pool?.end();
    await server?.stop();
    await nats.jsm.streams.delete(queue.stream).catch(() => {});
  }
}

// ---- report ------------------------------------------------------------------------------

const s = (v: number | null | undefined, digits = 2) => (v === null || v === undefined ? "-" : v.toFixed(digits));
const int = (v: number) => v.toLocaleString("en-US");

function processTable(reports: ProcReport[], cpuPhases: string[], rssPhases: string[]): string {
  const rows = reports.map((r) => [
    r.label,
    ...cpuPhases.map((p) => s(r.phases[p]?.cpuS)),
    ...cpuPhases.map((p) => s(r.phases[p]?.writtenMb, 0)),
    ...rssPhases.map((p) => s(r.phases[p]?.peakRssMb, 0)),
    s(r.vmHwmMb, 0),
  ]);
  const header = [
    "process",
    ...cpuPhases.map((p) => `cpu s ${p}`),
    ...cpuPhases.map((p) => `MB written ${p}`),
    ...rssPhases.map((p) => `RSS MB ${p}`),
    "VmHWM MB",
  ];
  return table(header, rows);
}

function machineLine(machine: Record<string, MachinePhase>, phases: string[]): string {
  return (
    `machine (cores of ${os.cpus().length}): ` +
    phases
      .map(
        (p) => machine[p] && `${p} busy ${s(machine[p].busyCores)}, iowait ${s(machine[p].iowaitCores)}, idle ${s(machine[p].idleCores)}`,
      )
      .filter(Boolean)
      .join("; ")
  );
}

const scaledE2eTarget = (TARGET_E2E_S * ROWS) / TARGET_ROWS;
const e2eTargetLabel =
  ROWS === TARGET_ROWS ? `<= ${TARGET_E2E_S} s` : `<= ${round(scaledE2eTarget, 2)} s (${TARGET_E2E_S} s scaled to ${int(ROWS)} rows)`;

// ---- main -----------------------------------------------------------------------------------

const tmp = mkdtempSync(path.join(os.tmpdir(), "stockroom-bench-bulk-"));
const errors: string[] = [];
let nats: NatsClient | undefined;
try {
  console.log(
    `bulk bench: ${int(ROWS)}-row CSV (all valid, seed ${SEED}) through upload → stage → JetStream → workers, ` +
      `workers ${WORKER_COUNTS.join("/")}, vs LOAD DATA LOCAL INFILE + INSERT … SELECT on the same MariaDB\n` +
      `settings: chunk ${bulkConfig.limits.chunkSize}, job window ${bulkConfig.queue.window}, worker concurrency ${bulkConfig.workerConcurrency}, ` +
      `max ack pending ${bulkConfig.queue.maxAckPending}, DB pool ${apiConfig.dbPoolSize} per process, ` +
      `bulk API node flags "${API_NODE_ARGS.join(" ")}"` +
      (childEnv["BULK_MAX_ITEMS"] ? `, BULK_MAX_ITEMS raised to ${ROWS}` : ""),
  );
  const file = await generateCsv(tmp, ROWS, SEED);
  console.log(
    `generated ${path.basename(file.path)}: ${round(file.bytes / 1024 / 1024, 1)} MB in ${s(file.generateMs / 1000)} s (not timed)`,
  );

  console.log(
    `\nraw: LOAD DATA LOCAL INFILE (the CSV file as generated) + one INSERT … SELECT … ON DUPLICATE KEY UPDATE${onVitess ? " (on MariaDB directly: LOAD DATA cannot pass through vtgate)" : ""}`,
  );
  const raw = await runRaw(file);
  const { database } = raw;
  console.log(
    `  ${database.version}, innodb_buffer_pool_size ${database.innodbBufferPoolMb} MB, ` +
      `innodb_flush_log_at_trx_commit ${database.innodbFlushLogAtTrxCommit}, binlog ${database.logBin ? "on" : "off"}`,
  );
  console.log(
    `  local_infile: ${raw.localInfile}; load ${s(raw.loadS)} s + insert-select ${s(raw.insertSelectS)} s = ${s(raw.totalS)} s, ${int(raw.itemsPerS)} items/s`,
  );

  nats = await connectNats({ servers: apiConfig.natsUrl.split(","), name: "bench-bulk" });
  const runs: PipelineResult[] = [];
  for (const n of WORKER_COUNTS) {
    console.log(`\npipeline, ${n} worker process${n === 1 ? "" : "es"}`);
    const run = await runPipeline(n, file, nats, errors);
    runs.push(run);
    console.log(
      `  ${run.state}: ingest ${s(run.ingestS)} s (last byte sent at ${s(run.lastByteSentS)} s), first chunk applied ${s(run.firstChunkS)} s later, ` +
        `apply ${s(run.applyS)} s, end to end ${s(run.endToEndS)} s, ${int(run.itemsPerS.endToEnd)} items/s`,
    );
    if (run.checksum.rows !== raw.checksum.rows || run.checksum.crc !== raw.checksum.crc) {
      errors.push(
        `${n} workers: products differ from the raw path's (${run.checksum.rows} rows, crc ${run.checksum.crc} vs ${raw.checksum.rows}, ${raw.checksum.crc})`,
      );
    }
  }

  console.log(`\nraw path (${int(ROWS)} rows)`);
  console.log(
    table(
      ["step", "s", "items/s"],
      [
        ["LOAD DATA LOCAL INFILE", s(raw.loadS), int(Math.round(ROWS / raw.loadS))],
        ["INSERT … SELECT … ON DUPLICATE KEY UPDATE", s(raw.insertSelectS), int(Math.round(ROWS / raw.insertSelectS))],
        ["total", s(raw.totalS), int(raw.itemsPerS)],
      ],
    ),
  );
  console.log(`\n${processTable(raw.processes, ["load", "insert-select"], ["load", "insert-select"])}`);
  console.log(machineLine(raw.machine, ["load", "insert-select"]));
  console.log(statusTable(Object.entries(raw.status).map(([label, counters]) => ({ label, counters }))));

  console.log(`\npipeline (${int(ROWS)} rows, ${runs[0]?.chunks ?? 0} chunks)`);
  console.log(
    table(
      [
        "workers",
        "ingest s",
        "apply s",
        "1st chunk s",
        "e2e s",
        "ingest items/s",
        "apply items/s",
        "e2e items/s",
        "e2e / raw",
        "API VmHWM MB",
        "worker VmHWM MB",
      ],
      runs.map((r) => {
        const hwm = (label: string) => r.processes.find((p) => p.label === label)?.vmHwmMb;
        const workerHwm = r.processes.filter((p) => p.label.startsWith("worker ")).map((p) => s(p.vmHwmMb, 0));
        return [
          r.workers,
          s(r.ingestS),
          s(r.applyS),
          s(r.firstChunkS),
          s(r.endToEndS),
          int(r.itemsPerS.ingest),
          int(r.itemsPerS.apply),
          int(r.itemsPerS.endToEnd),
          `${s(r.endToEndS / raw.totalS)}x`,
          s(hwm("bulk API"), 0),
          workerHwm.join(" / "),
        ];
      }),
    ),
  );
  for (const r of runs) {
    console.log(
      `\nwhere the CPU went, ${r.workers} worker${r.workers === 1 ? "" : "s"} (ingest ${s(r.ingestS)} s, apply ${s(r.applyS)} s of wall time; 2 cores = 2 cpu s per s)`,
    );
    console.log(processTable(r.processes, ["ingest", "apply"], ["idle", "ingest", "apply"]));
    console.log(machineLine(r.machine, ["ingest", "apply"]));
    console.log(statusTable(Object.entries(r.status).map(([label, counters]) => ({ label, counters }))));
    const warned = Object.entries(r.workerWarnings);
    if (warned.length > 0) console.log(`worker warnings: ${warned.map(([m, n]) => `${n}x "${m}"`).join("; ")}`);
  }
  const last = runs.at(-1);
  if (last) {
    console.log(`\nwhat each path leaves in MariaDB (data + index, InnoDB estimates)`);
    console.log(
      table(
        ["path", "table", "rows", "MB"],
        [
          ...raw.tables.map((t) => ["raw", t.table, int(t.rows), s(t.mb, 1)]),
          ...last.tables.map((t) => [`pipeline`, t.table, int(t.rows), s(t.mb, 1)]),
        ],
      ),
    );
  }

  const targets = runs.flatMap((r) => {
    const api = r.processes.find((p) => p.label === "bulk API");
    const apiPeak = api?.vmHwmMb ?? NaN;
    return [
      {
        workers: r.workers,
        target: `end to end <= ${TARGET_RATIO}x raw`,
        actual: `${s(r.endToEndS / raw.totalS)}x`,
        pass: r.endToEndS <= TARGET_RATIO * raw.totalS,
      },
      { workers: r.workers, target: `end to end ${e2eTargetLabel}`, actual: `${s(r.endToEndS)} s`, pass: r.endToEndS <= scaledE2eTarget },
      {
        workers: r.workers,
        target: `bulk API peak RSS < ${TARGET_API_RSS_MB} MB`,
        actual: `${s(apiPeak, 0)} MB`,
        pass: apiPeak < TARGET_API_RSS_MB,
      },
    ];
  });
  console.log(
    `\n${table(
      ["workers", "target", "actual", "result"],
      targets.map((t) => [t.workers, t.target, t.actual, t.pass ? "PASS" : "MISS"]),
    )}`,
  );

  const out = writeResults("bulk", {
    rows: ROWS,
    seed: SEED,
    fileBytes: file.bytes,
    settings: {
      chunkSize: bulkConfig.limits.chunkSize,
      jobWindow: bulkConfig.queue.window,
      workerConcurrency: bulkConfig.workerConcurrency,
      maxAckPending: bulkConfig.queue.maxAckPending,
      dbPoolSize: apiConfig.dbPoolSize,
      maxItems: bulkConfig.limits.maxItems,
      apiNodeArgs: API_NODE_ARGS,
    },
    database,
    raw: {
      ...raw,
      database: undefined,
      note: "the generated CSV loaded as is; price to minor units and attributes to JSON inside INSERT … SELECT (timed)",
    },
    runs,
    targets,
    errors,
  });
  console.log(`\nwrote ${path.relative(root, out)}`);
  if (errors.length > 0) {
    console.error(`\nerrors:\n  ${errors.join("\n  ")}`);
    process.exitCode = 1;
  }
} catch (error) {
  console.error("bulk bench failed:", error, ...(errors.length > 0 ? ["\nalso:", errors] : []));
  process.exitCode = 1;
} finally {
  await nats?.close();
  rmSync(tmp, { recursive: true, force: true });
}
