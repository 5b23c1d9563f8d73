/**
 * `npm run bench:bulk`: a bulk CSV through the whole pipeline (upload →
 * parse/validate → stage → JetStream → workers → products), with 1, 2 and 4
 * worker processes, against two floors on the same MariaDB: "raw", LOAD DATA
 * LOCAL INFILE of the same file into a staging table plus one INSERT …
 * SELECT … ON DUPLICATE KEY UPDATE into products; and "raw durable", the same
 * plus what the pipeline also makes durable, set-based with no per-item work
 * outside MariaDB: one audit row and one outbox event per product, each by
 * one INSERT … SELECT.
 *
 * Every pipeline run gets a fresh database, its own JetStream stream, subject
 * prefix and durable, the bulk API process (services/bulk/src/main.ts) and N
 * worker processes (services/bulk/src/worker-main.ts), as Nomad runs them.
 * The file is generated once (all rows valid, fixed seed) and uploaded from
 * this process in resumable 1 MiB parts (CreateUpload, AppendUploadPart,
 * CompleteUpload: what the SDK and the dashboard do by default; chunks then
 * apply while the file is staged) or with UploadBulkFile (client streaming:
 * chunks are published once the whole file is staged), BENCH_UPLOAD=parts
 * (default), stream, or both. Phases: upload + validate + stage (until the
 * upload call returns), apply (until WatchBulkJob shows a final state; it
 * polls every 250 ms), end to end; the first applied chunk is watched for in
 * the ledger from the start. Each child's CPU time, bytes written and RSS
 * are sampled from /proc per phase (MariaDB's and nats-server's too, when
 * they run here), with the machine's busy / iowait cores and MariaDB's
 * server-wide counters (row lock waits, deadlocks, redo); MariaDB's CPU
 * microseconds and redo bytes per item are reported for every path; peak
 * RSS is VmHWM read just before a child is stopped. The raw paths load the
 * generated file as is; turning prices into minor units happens in the
 * (timed) INSERT … SELECT. Every path must end with the same products: a
 * checksum of every product's content is compared.
 *
 * BENCH_ROWS (default 500000), BENCH_WORKERS (default "1,2,4"),
 * BENCH_UPLOAD, BENCH_WARM_ROWS (a warm-up job for the workers first, see
 * below), BENCH_DOWNSTREAM=1 runs the outbox relay and the search
 * projector beside each run and reports how long after the job's end the
 * outbox drained and search caught up (bulk-downstream.ts), BENCH_SEAL=0
 * skips sealing the job's audit rows after it (see below),
 * BENCH_PROFILE=1 writes CPU profiles of the API and worker processes to
 * bench-results/profiles/, BENCH_ROUNDS=n repeats the raw paths and the
 * runs n times in turn and judges the targets on the medians of ratios
 * taken within each round. BULK_* settings in the environment reach the
 * children (e.g. BULK_JOB_WINDOW, BULK_WORKER_CONCURRENCY, BULK_CHUNK_FORMAT).
 * Exits non-zero on errors only (a failed call, a job not SUCCEEDED), never
 * on a missed target.
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createReadStream, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { createConnection, createPool, type Connection, type Pool, type ResultSetHeader, type RowDataPacket } from "mysql2/promise";
import type { Client } from "@connectrpc/connect";
import { BulkJobState, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { parseBulkConfig, ensureChunkQueue, bulkMigrations, slotBucket } from "@stockroom/bulk";
import { catalogMigrations, MASK_PATHS, sealAuditChains, type CatalogTables } from "@stockroom/catalog";
import { createMerchant } from "@stockroom/common/rpc";
import { parseApiConfig, readInt, currencyDigits, newUlid } from "@stockroom/common";
import { commonMigrations, createDatabase, dropDatabase, ensureDatabase, migrateToLatest, type CommonTables } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { freePort, onVitess, testDatabaseUrl } from "@stockroom/common/testing";
import { cpuTicks, findProcesses, procStatus, TICKS_PER_S } from "./procfs.ts";
import {
  API_NODE_ARGS,
  apiMain,
  FINAL_STATES as FINAL,
  generateCsv,
  root,
  startWorker,
  stopChild,
  until,
  uploadInParts,
  uploadRequests,
  WORKER_NODE_ARGS,
  type FileInfo,
} from "./bulk-processes.ts";
import { startDownstream, type Downstream, type DownstreamResult } from "./bulk-downstream.ts";
import { startServerProcess, type ServerProcess } from "./server-process.ts";
import { median, round, table, writeResults } from "./stats.ts";
import { besideVitess } from "./beside-vitess.ts";

// --vitess: this benchmark on MariaDB and through vtgate, side by side (beside-vitess.ts).
if (await besideVitess("bulk", import.meta.filename)) process.exit(0);

const ROWS = readInt(process.env, "BENCH_ROWS", 500_000, 1, 10_000_000);
const WORKER_COUNTS = (process.env["BENCH_WORKERS"] ?? "1,2,4").split(",").map((s) => {
  const n = Number(s.trim());
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`BENCH_WORKERS must list worker counts from 1 to 64, not "${s}"`);
  return n;
});
/** BENCH_UPLOAD: "parts" (default: resumable parts, the SDK's and the dashboard's way), "stream" (UploadBulkFile), or both. */
type UploadMode = "stream" | "parts";
const UPLOAD_MODES = (process.env["BENCH_UPLOAD"] ?? "parts").split(",").map((m) => {
  const mode = m.trim();
  if (mode !== "stream" && mode !== "parts") throw new Error(`BENCH_UPLOAD must list "parts" and/or "stream", not "${m}"`);
  return mode as UploadMode;
});
/** BENCH_DOWNSTREAM=1: the relay and the search projector run beside each pipeline run (bulk-downstream.ts). */
const DOWNSTREAM = process.env["BENCH_DOWNSTREAM"] === "1";
/**
 * BENCH_WARM_ROWS (default 0): before the measured job, the workers apply a
 * job of this many rows for another merchant, so the measured one finds them
 * warm (compiled and optimized code, grown heaps), as long-running workers
 * are; 0 measures workers started just before the job.
 */
const WARM_ROWS = readInt(process.env, "BENCH_WARM_ROWS", 0, 0, 1_000_000);
/**
 * BENCH_SEAL (default 1; 0 skips it): after the job, with the workers
 * stopped, this process seals the job's audit rows into the merchant's hash
 * chain (sealAuditChains, what the workers' sealers do from 30 s after a
 * change) and reports what that costs per item: MariaDB's CPU and redo, and
 * the sealer's own CPU (this process's, in that phase).
 * It is not part of end to end, but every item pays it soon after.
 */
const SEAL = process.env["BENCH_SEAL"] !== "0";
/**
 * BENCH_ROUNDS (default 1): the raw paths and every pipeline run, this many
 * times in turn. A shared machine's speed drifts by tens of percent within
 * minutes, so each ratio is taken within its round (against that round's
 * raw, and 4 workers against that round's 2), and the targets are judged on
 * the median over the rounds.
 */
const ROUNDS = readInt(process.env, "BENCH_ROUNDS", 1, 1, 20);
const SEED = 42;
const TARGET_RATIO = 3;
const TARGET_E2E_S = 30;
const TARGET_ROWS = 500_000;
const TARGET_API_RSS_MB = 300;
const TARGET_DRAINED_S = 10;
const TARGET_SEARCH_S = 15;
/** How long one job may take before the run is called failed. */
const JOB_TIMEOUT_MS = 20 * 60_000;
const SAMPLE_MS = 200;

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

/**
 * serverPid is the pid of the MariaDB server this bench uses, from its pid
 * file when that is readable here (readServerPid): another server on the
 * machine (another engineer's Vitess cluster) is then labelled apart and left
 * out of the per-item figures.
 */
let serverPid: number | undefined;

async function readServerPid(conn: Connection): Promise<number | undefined> {
  try {
    const [rows] = await conn.query<RowDataPacket[]>("SELECT @@pid_file AS f");
    const pid = Number(readFileSync(String(rows[0]!["f"]), "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function sharedServers(): Watched[] {
  return findProcesses({ mariadbd: "mariadb", mysqld: "mariadb", "nats-server": "nats-server" }).map((w) =>
    w.label === "mariadb" && serverPid !== undefined && w.pid !== serverPid ? { ...w, label: "mariadb (another server)" } : w,
  );
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
  /** "raw": products only; "raw durable": products, one audit row and one outbox event per item. */
  variant: "raw" | "raw durable";
  loadS: number;
  insertSelectS: number;
  /** raw durable: the audit rows' and the events' INSERT … SELECTs. */
  auditS?: number;
  eventsS?: number;
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
 *
 * durable ("raw durable"): the same, then the rest of what the pipeline
 * makes durable, set-based with no per-item work outside MariaDB: one audit
 * row per product (product_changes, the product's JSON as its after state,
 * as the catalog writes it) and one outbox event per product (outbox_events,
 * the same JSON standing in for the protobuf ProductEvent), each with one
 * INSERT … SELECT from products.
 */
async function runRaw(file: FileInfo, durable: boolean): Promise<RawResult> {
  // Through vtgate LOAD DATA LOCAL INFILE cannot run (refused on a sharded keyspace; on one shard the tablet
  // cannot read the client's file): with --vitess the raw floor stays on MariaDB directly, beside the pipeline
  // through vtgate.
  const databaseUrl = onVitess
    ? `${process.env["TEST_DATABASE_URL"] ?? "mysql://root@127.0.0.1:3306/"}t_bench_bulk_raw_${randomBytes(4).toString("hex")}`
    : testDatabaseUrl(durable ? "bench_bulk_rawd" : "bench_bulk_raw");
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
    serverPid ??= await readServerPid(conn);
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
    const s2 = await dbStatus(conn);
    const steps: Record<string, Counters> = { load: statusDelta(s0, s1), "insert-select": statusDelta(s1, s2) };
    let t3 = t2;
    let t4 = t2;
    if (durable) {
      monitor.phase("audit");
      const snapshot = `JSON_OBJECT('id', product_id, 'sku', sku, 'title', title, 'description', description,
        'priceMinor', price_minor, 'currency', currency, 'stock', stock, 'status', status, 'attributes', attributes,
        'version', version, 'createdAt', created_at, 'updatedAt', updated_at)`;
      // Change and event ids: another ULID time prefix before the product id's row number.
      const changeId = `CONCAT(?, SUBSTRING(product_id, 11))`;
      const changePrefix = newUlid().slice(0, 10);
      await conn.query(
        `INSERT INTO product_changes (merchant_id, change_id, product_id, sku, change_type, version, changed_fields, before_state,
           after_state, actor, source_kind, source_ref, request_id, reason, created_at)
         SELECT merchant_id, ${changeId}, product_id, sku, 'created', version, ?, NULL, ${snapshot},
           'bulk_job:raw', 'bulk_job', 'raw', '', '', NOW(3)
         FROM products WHERE merchant_id = ?`,
        [changePrefix, JSON.stringify(MASK_PATHS), merchantId],
      );
      t3 = performance.now();
      monitor.phase("events");
      const s3 = await dbStatus(conn);
      await conn.query(
        `INSERT INTO outbox_events (merchant_id, event_id, aggregate_type, aggregate_id, aggregate_version, event_type, payload,
           trace_context, created_at, published_at)
         SELECT merchant_id, ${changeId}, 'product', product_id, version, 'product.created', CAST(${snapshot} AS BINARY), NULL, NOW(3), NULL
         FROM products WHERE merchant_id = ?`,
        [changePrefix, merchantId],
      );
      t4 = performance.now();
      const s4 = await dbStatus(conn);
      steps["audit"] = statusDelta(s2, s3);
      steps["events"] = statusDelta(s3, s4);
    }
    const { processes, machine } = monitor.stop();
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
    const totalS = (t4 - t0) / 1000;
    return {
      database,
      variant: durable ? "raw durable" : "raw",
      loadS: round((t1 - t0) / 1000),
      insertSelectS: round((t2 - t1) / 1000),
      ...(durable ? { auditS: round((t3 - t2) / 1000), eventsS: round((t4 - t3) / 1000) } : {}),
      totalS: round(totalS),
      itemsPerS: Math.round(ROWS / totalS),
      localInfile,
      processes,
      machine,
      status: steps,
      tables: await tableSizes(
        conn,
        durable ? ["raw_staging", "products", "product_changes", "outbox_events"] : ["raw_staging", "products"],
      ),
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
  /** Of the workers, those that held a host slot and applied (the rest stood by: BULK_WORKER_SLOTS_PER_HOST). */
  applying: number;
  /** How the file was sent: UploadBulkFile (stream) or resumable parts (parts: the SDK's and the dashboard's default). */
  upload: UploadMode;
  jobId: string;
  state: string;
  /** Upload + parse/validate + stage: until UploadBulkFile (or CompleteUpload) returned. */
  ingestS: number;
  /** When this process had handed the last byte to the transport (flow control holds it back), or the last part was committed. */
  lastByteSentS: number;
  /** From the start of the upload to the first applied chunk (the job's chunks_done, polled every 100 ms). */
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
  /** BENCH_DOWNSTREAM=1: the outbox relay and the search projector, in this process, from the upload on. */
  downstream?: DownstreamResult;
  /** BENCH_SEAL: sealing the audit rows after the job (phase "seal"). */
  seal?: { rows: number; s: number };
}

/** warmUp applies warmFile as another merchant's job (BENCH_WARM_ROWS) and waits for it to end. */
async function warmUp(server: ServerProcess, warmFile: FileInfo, id: string): Promise<void> {
  const db = createDatabase({ url: server.databaseUrl, poolSize: 1 });
  const merchant = await createMerchant(db, "Warm-up merchant").finally(() => db.destroy());
  const client = server.client(BulkJobService, merchant.apiKey);
  const queued = await uploadInParts(client, warmFile.path, `warm-${id}`, () => {});
  const job = await finalState(client, queued!.id);
  if (job?.state !== BulkJobState.SUCCEEDED) throw new Error(`the warm-up job ended ${job ? BulkJobState[job.state] : "unwatched"}`);
}

/** finalState follows a job (WatchBulkJob) until it reaches a final state; undefined if the watch ends first. */
async function finalState(client: Client<typeof BulkJobService>, jobId: string): Promise<BulkJob | undefined> {
  // Not the call's timeoutMs: its timer outlives a stream ended early and would hold the process.
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new Error(`job ${jobId} did not end within ${JOB_TIMEOUT_MS / 60_000} minutes`)),
    JOB_TIMEOUT_MS,
  );
  try {
    for await (const { job } of client.watchBulkJob({ jobId }, { signal: deadline.signal })) {
      if (job && FINAL.has(job.state)) return job;
    }
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

async function runPipeline(
  workerCount: number,
  upload: UploadMode,
  file: FileInfo,
  nats: NatsClient,
  errors: string[],
  warmFile?: FileInfo,
): Promise<PipelineResult> {
  const id = randomBytes(4).toString("hex");
  const queueEnv: Record<string, string> = {
    ...childEnv,
    BULK_STREAM: `BENCH_BULK_${id}`,
    BULK_SUBJECT_PREFIX: `bench.bulk.${id}`,
    BULK_DURABLE: `bench-bulk-${id}`,
  };
  const settings = parseBulkConfig({ ...process.env, ...queueEnv });
  const { queue } = settings;
  // At most the host's slots of the workers apply (BULK_WORKER_SLOTS_PER_HOST, default its CPUs); the rest stand by.
  const applying = settings.workerSlotsPerHost === 0 ? workerCount : Math.min(workerCount, settings.workerSlotsPerHost);
  // The stream exists before anyone publishes; the workers' own ensure is then a no-op.
  await ensureChunkQueue(nats.jsm, queue);
  let server: ServerProcess | undefined;
  let pool: Pool | undefined;
  let downstream: Downstream | undefined;
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
    const metricsPorts: number[] = [];
    for (let i = 0; i < workerCount; i++) {
      // Each worker serves /readyz (as Nomad checks it), so standbys are known to be up before the clock starts.
      metricsPorts.push(await freePort());
      const w = startWorker(
        { ...queueEnv, DATABASE_URL: server.databaseUrl, NATS_URL: apiConfig.natsUrl, METRICS_PORT: String(metricsPorts[i]) },
        warnings,
      );
      w.once("exit", (code, signal) => {
        if (w.killed) return;
        errors.push(`worker ${i + 1} of ${workerCount} exited on its own (code ${code}, signal ${signal})`);
      });
      workers.push(w);
    }
    // Every worker that holds a host slot has a pull request waiting on the consumer: all are ready.
    await until(
      `${applying} of ${workerCount} workers to pull`,
      async () => ((await nats.jsm.consumers.info(queue.stream, queue.durable)).num_waiting >= applying ? true : undefined),
      30_000,
    );
    // Standby workers (past the host's slots) pull nothing: they are ready once their /readyz answers.
    await until(
      `${workerCount} workers to be ready`,
      async () => {
        const answers = await Promise.all(
          metricsPorts.map((port) =>
            fetch(`http://127.0.0.1:${port}/readyz`).then(
              (r) => r.ok,
              () => false,
            ),
          ),
        );
        return answers.every(Boolean) ? true : undefined;
      },
      30_000,
    );
    const watched: Watched[] = [
      { label: "bulk API", pid: apiPid },
      ...workers.map((w, i) => ({ label: `worker ${i + 1}`, pid: w.pid! })),
      ...sharedServers(),
      { label: "bench (client)", pid: process.pid },
    ];
    const client = server.client(BulkJobService);
    if (warmFile) await warmUp(server, warmFile, id);
    let lastByteAt = 0;
    const lastByte = () => (lastByteAt = performance.now());
    if (DOWNSTREAM) downstream = await startDownstream(server.databaseUrl, nats, id);

    pool = createPool({ uri: server.databaseUrl, connectionLimit: 2, timezone: "Z", supportBigNumbers: true, charset: "utf8mb4" });
    const s0 = await dbStatus(pool);
    const monitor = createMonitor(watched, "idle");
    monitor.phase("ingest");
    const t0 = performance.now();
    // Chunks may apply while the file is staged: the first one is watched for in the ledger from the start.
    let firstChunkAt: number | undefined;
    const firstChunk = watchFirstChunk(pool, server.merchantId, () => (firstChunkAt = performance.now()));
    const queued =
      upload === "stream"
        ? (await client.uploadBulkFile(uploadRequests(file.path, `bench-${id}`, lastByte))).job
        : await uploadInParts(client, file.path, `bench-${id}`, lastByte);
    const t1 = performance.now();
    monitor.phase("apply");
    const s1 = await dbStatus(pool);
    if (!queued || ![BulkJobState.QUEUED, BulkJobState.RUNNING, BulkJobState.SUCCEEDED].includes(queued.state)) {
      firstChunk.stop();
      throw new Error(`the upload ended in state ${queued ? BulkJobState[queued.state] : "none"}: ${queued?.error}`);
    }
    let final: BulkJob | undefined;
    try {
      final = await finalState(client, queued.id);
    } finally {
      firstChunk.stop();
    }
    const t2 = performance.now();
    monitor.phase("after");
    const s2 = await dbStatus(pool);
    const status: Record<string, Counters> = { ingest: statusDelta(s0, s1), apply: statusDelta(s1, s2) };
    const downstreamResult = downstream && (await downstream.finish(pool, t2));
    monitor.hwm([apiPid, ...workers.map((w) => w.pid!)]);
    if (!final) throw new Error(`job ${queued.id}: the watch ended before a final state`);
    if (final.state !== BulkJobState.SUCCEEDED) {
      errors.push(`${workerCount} workers: job ${final.id} ended ${BulkJobState[final.state]} (${final.error || "no error"})`);
    }
    for (const w of workers) await stopChild(w);
    let seal: PipelineResult["seal"];
    if (SEAL) {
      monitor.phase("seal");
      const s3 = await dbStatus(pool);
      const t3 = performance.now();
      const db = createDatabase<CatalogTables>({ url: server.databaseUrl, poolSize: 2 });
      const sealed = await sealAuditChains(db, { lagMs: 0 }).finally(() => db.destroy());
      for (const f of sealed.failed) errors.push(`${workerCount} workers: sealing merchant ${f.merchantId} failed: ${String(f.error)}`);
      seal = { rows: sealed.sealed, s: round((performance.now() - t3) / 1000) };
      status.seal = statusDelta(s3, await dbStatus(pool));
    }
    const { processes, machine } = monitor.stop();

    const c = final.counts!;
    const ingestS = (t1 - t0) / 1000;
    const applyS = (t2 - t1) / 1000;
    return {
      workers: workerCount,
      applying,
      upload,
      jobId: final.id,
      state: BulkJobState[final.state]!,
      ingestS: round(ingestS),
      lastByteSentS: round((lastByteAt - t0) / 1000),
      firstChunkS: firstChunkAt === undefined ? null : round((firstChunkAt - t0) / 1000),
      applyS: round(applyS),
      endToEndS: round(ingestS + applyS),
      itemsPerS: { ingest: Math.round(ROWS / ingestS), apply: Math.round(ROWS / applyS), endToEnd: Math.round(ROWS / (ingestS + applyS)) },
      counts: Object.fromEntries(
        (["total", "valid", "invalid", "applied", "unchanged", "conflict", "failed"] as const).map((k) => [k, Number(c[k])]),
      ),
      chunks: final.chunkCount,
      processes,
      machine,
      status,
      workerWarnings: Object.fromEntries(warnings),
      tables: await tableSizes(pool, ["products", "product_changes", "outbox_events", "bulk_job_items", "bulk_job_chunks"]),
      checksum: await productsChecksum(pool, server.merchantId),
      downstream: downstreamResult,
      seal,
    };
  } finally {
    await downstream?.stop();
    for (const w of workers) await stopChild(w);
    await pool?.end();
    await server?.stop();
    await nats.jsm.streams.delete(queue.stream).catch(() => {});
    // The workers' slot bucket (a KV bucket is a stream named KV_<bucket>).
    await nats.jsm.streams.delete(`KV_${slotBucket(queue.stream)}`).catch(() => {});
  }
}

/** watchFirstChunk calls found once a chunk of the merchant's job is done, polling the ledger every 100 ms until stopped. */
function watchFirstChunk(pool: Pool, merchantId: string, found: () => void): { stop(): void } {
  let running = true;
  void (async () => {
    while (running) {
      try {
        const [rows] = await pool.query<RowDataPacket[]>("SELECT MAX(chunks_done) AS n FROM bulk_jobs WHERE merchant_id = ?", [merchantId]);
        if (Number(rows[0]!["n"] ?? 0) > 0) {
          found();
          return;
        }
      } catch {
        // the next poll tells
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop() {
      running = false;
    },
  };
}

/**
 * PerItem is what one item cost MariaDB: CPU microseconds (its process, all
 * phases of the run) and redo bytes. Both are server-wide: whatever else the
 * server did meanwhile (other benchmarks, tests) counts too. A pipeline run
 * also has the bulk API's and its workers' CPU microseconds per item (all
 * workers together), so runs with different worker counts show what the
 * same items cost each side.
 */
interface PerItem {
  mariadbCpuUs: number | null;
  redoBytes: number;
  apiCpuUs: number | null;
  workersCpuUs: number | null;
}

/** sealCost is what sealing the run's audit rows cost per item (BENCH_SEAL): MariaDB's CPU and redo, and the sealer's CPU. */
function sealCost(r: PipelineResult) {
  if (!r.seal) return undefined;
  const sealerCpuS = r.processes.find((p) => p.label === "bench (client)")?.phases["seal"]?.cpuS ?? 0;
  return { ...r.seal, ...perItem(r.processes, r.status, ["seal"]), sealerCpuUs: round((sealerCpuS * 1e6) / ROWS, 1) };
}

/** perItem sums MariaDB's CPU and redo over the given phases of a run and divides by the rows. */
function perItem(processes: ProcReport[], status: Record<string, Counters>, phases: string[]): PerItem {
  /** cpuUs adds up the chosen processes' CPU over the phases, per item (null: none of them ran). */
  const cpuUs = (chosen: (label: string) => boolean) => {
    const of = processes.filter((p) => chosen(p.label));
    if (of.length === 0) return null;
    return round((of.reduce((sum, p) => sum + phases.reduce((t, ph) => t + (p.phases[ph]?.cpuS ?? 0), 0), 0) * 1e6) / ROWS, 1);
  };
  const redoMb = phases.reduce((t, ph) => t + (status[ph]?.["redo MB"] ?? 0), 0);
  return {
    mariadbCpuUs: cpuUs((label) => label === "mariadb"),
    redoBytes: Math.round((redoMb * 1024 * 1024) / ROWS),
    apiCpuUs: cpuUs((label) => label === "bulk API"),
    workersCpuUs: cpuUs((label) => label.startsWith("worker ")),
  };
}

// ---- report ------------------------------------------------------------------------------

/** rawOf is a round's raw path of the given variant. */
function rawOf<R extends { round: number; variant: string }>(raws: readonly R[], roundNo: number, variant: RawResult["variant"]): R {
  return raws.find((r) => r.round === roundNo && r.variant === variant)!;
}

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
    `bulk bench: ${int(ROWS)}-row CSV (all valid, seed ${SEED}) through upload (${UPLOAD_MODES.join(", ")}) → stage → JetStream → workers, ` +
      `workers ${WORKER_COUNTS.join("/")}, vs LOAD DATA LOCAL INFILE + INSERT … SELECT on the same MariaDB (raw, and raw durable: ` +
      `with an audit row and an outbox event per item)${DOWNSTREAM ? "; relay and search projector running" : ""}\n` +
      `settings: chunk ${bulkConfig.limits.chunkSize}, chunk format ${bulkConfig.limits.chunkFormat}, job window ${bulkConfig.queue.window}, ` +
      `worker concurrency ${bulkConfig.workerConcurrency}, max ack pending ${bulkConfig.queue.maxAckPending}, DB pool ${apiConfig.dbPoolSize} per process, ` +
      `bulk API node flags "${API_NODE_ARGS.join(" ")}", worker node flags "${WORKER_NODE_ARGS.join(" ")}"` +
      (WARM_ROWS > 0 ? `, workers warmed by a ${int(WARM_ROWS)}-row job of another merchant` : ", workers cold") +
      (childEnv["BULK_MAX_ITEMS"] ? `, BULK_MAX_ITEMS raised to ${ROWS}` : "") +
      `; load average at start ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(" ")}`,
  );
  const file = await generateCsv(tmp, ROWS, SEED);
  const warmFile = WARM_ROWS > 0 ? await generateCsv(tmp, WARM_ROWS, SEED + 1) : undefined;
  console.log(
    `generated ${path.basename(file.path)}: ${round(file.bytes / 1024 / 1024, 1)} MB in ${s(file.generateMs / 1000)} s (not timed)`,
  );

  nats = await connectNats({ servers: apiConfig.natsUrl.split(","), name: "bench-bulk" });
  const raws: (RawResult & { round: number })[] = [];
  const runs: (PipelineResult & { loadAverage: number; round: number })[] = [];
  for (let roundNo = 1; roundNo <= ROUNDS; roundNo++) {
    if (ROUNDS > 1) console.log(`\n== round ${roundNo} of ${ROUNDS}`);
    for (const durable of [false, true]) {
      console.log(
        `\n${durable ? "raw durable" : "raw"}: LOAD DATA LOCAL INFILE (the CSV file as generated) + one INSERT … SELECT … ON DUPLICATE KEY UPDATE` +
          (durable ? " + INSERT … SELECT of the audit rows + INSERT … SELECT of the outbox events" : "") +
          (onVitess ? " (on MariaDB directly: LOAD DATA cannot pass through vtgate)" : ""),
      );
      const r = await runRaw(file, durable);
      raws.push({ ...r, round: roundNo });
      const steps = durable ? ` + audit ${s(r.auditS)} s + events ${s(r.eventsS)} s` : "";
      console.log(
        `  local_infile: ${r.localInfile}; load ${s(r.loadS)} s + insert-select ${s(r.insertSelectS)} s${steps} = ${s(r.totalS)} s, ` +
          `${int(r.itemsPerS)} items/s; load average ${os.loadavg()[0]!.toFixed(2)}`,
      );
    }
    if (roundNo === 1) {
      const { database } = raws[0]!;
      console.log(
        `  ${database.version}, innodb_buffer_pool_size ${database.innodbBufferPoolMb} MB, ` +
          `innodb_flush_log_at_trx_commit ${database.innodbFlushLogAtTrxCommit}, binlog ${database.logBin ? "on" : "off"}`,
      );
    }
    const raw = rawOf(raws, roundNo, "raw");
    for (const upload of UPLOAD_MODES) {
      for (const n of WORKER_COUNTS) {
        console.log(
          `\npipeline, ${upload === "parts" ? "resumable parts" : "UploadBulkFile stream"}, ${n} worker process${n === 1 ? "" : "es"}`,
        );
        const run = await runPipeline(n, upload, file, nats, errors, warmFile);
        const loadAverage = round(os.loadavg()[0]!, 2);
        runs.push({ ...run, loadAverage, round: roundNo });
        const down = run.downstream
          ? `; outbox drained ${s(run.downstream.drainedS)} s and search caught up ${s(run.downstream.searchCaughtUpS)} s after the job's end`
          : "";
        console.log(
          `  ${run.state}: ingest ${s(run.ingestS)} s (last byte sent at ${s(run.lastByteSentS)} s), first chunk applied at ${s(run.firstChunkS)} s, ` +
            `apply ${s(run.applyS)} s after ingest, end to end ${s(run.endToEndS)} s, ${int(run.itemsPerS.endToEnd)} items/s${down}; load average ${loadAverage}`,
        );
        if (run.checksum.rows !== raw.checksum.rows || run.checksum.crc !== raw.checksum.crc) {
          errors.push(
            `${upload}, ${n} workers: products differ from the raw path's (${run.checksum.rows} rows, crc ${run.checksum.crc} vs ${raw.checksum.rows}, ${raw.checksum.crc})`,
          );
        }
      }
    }
  }
  const { database } = raws[0]!;
  /** Each run's ratios, against the raw paths of its own round. */
  const ratios = (r: { round: number; endToEndS: number }) => ({
    raw: r.endToEndS / rawOf(raws, r.round, "raw").totalS,
    durable: r.endToEndS / rawOf(raws, r.round, "raw durable").totalS,
  });

  const roundOf = (r: { round: number }) => (ROUNDS > 1 ? `, round ${r.round}` : "");
  for (const r of raws) {
    console.log(`\n${r.variant} path (${int(ROWS)} rows${roundOf(r)})`);
    const phases = r.variant === "raw" ? ["load", "insert-select"] : ["load", "insert-select", "audit", "events"];
    console.log(
      table(
        ["step", "s", "items/s"],
        [
          ["LOAD DATA LOCAL INFILE", s(r.loadS), int(Math.round(ROWS / r.loadS))],
          ["INSERT … SELECT … ON DUPLICATE KEY UPDATE", s(r.insertSelectS), int(Math.round(ROWS / r.insertSelectS))],
          ...(r.auditS !== undefined ? [["INSERT … SELECT audit rows", s(r.auditS), int(Math.round(ROWS / r.auditS))]] : []),
          ...(r.eventsS !== undefined ? [["INSERT … SELECT outbox events", s(r.eventsS), int(Math.round(ROWS / r.eventsS))]] : []),
          ["total", s(r.totalS), int(r.itemsPerS)],
        ],
      ),
    );
    console.log(`\n${processTable(r.processes, phases, phases)}`);
    console.log(machineLine(r.machine, phases));
    console.log(statusTable(Object.entries(r.status).map(([label, counters]) => ({ label, counters }))));
  }

  const rawPerItem = raws.map((r) => perItem(r.processes, r.status, Object.keys(r.status)));
  const runPerItem = runs.map((r) => perItem(r.processes, r.status, ["ingest", "apply"]));
  const us = (p: PerItem) => s(p.mariadbCpuUs, 1);
  const nodeUs = (p: PerItem) => `${s(p.apiCpuUs, 1)} / ${s(p.workersCpuUs, 1)}`;
  console.log(`\npipeline (${int(ROWS)} rows, ${runs[0]?.chunks ?? 0} chunks)`);
  console.log(
    table(
      [
        "upload",
        ...(ROUNDS > 1 ? ["round"] : []),
        "workers",
        "ingest s",
        "apply s",
        "1st chunk s",
        "e2e s",
        "e2e items/s",
        "e2e / raw",
        "e2e / raw durable",
        "MariaDB cpu µs/item",
        "API / workers cpu µs/item",
        "redo B/item",
        "API VmHWM MB",
        "worker VmHWM MB",
        "load avg",
      ],
      [
        ...raws.map((r, i) => [
          r.variant,
          ...(ROUNDS > 1 ? [r.round] : []),
          "-",
          "-",
          "-",
          "-",
          s(r.totalS),
          int(r.itemsPerS),
          `${s(r.totalS / rawOf(raws, r.round, "raw").totalS)}x`,
          r.variant === "raw" ? "-" : "1.00x",
          us(rawPerItem[i]!),
          "-",
          int(rawPerItem[i]!.redoBytes),
          "-",
          "-",
          "-",
        ]),
        ...runs.map((r, i) => {
          const hwm = (label: string) => r.processes.find((p) => p.label === label)?.vmHwmMb;
          const workerHwm = r.processes.filter((p) => p.label.startsWith("worker ")).map((p) => s(p.vmHwmMb, 0));
          return [
            r.upload,
            ...(ROUNDS > 1 ? [r.round] : []),
            r.applying === r.workers ? r.workers : `${r.workers} (${r.applying} apply)`,
            s(r.ingestS),
            s(r.applyS),
            s(r.firstChunkS),
            s(r.endToEndS),
            int(r.itemsPerS.endToEnd),
            `${s(ratios(r).raw)}x`,
            `${s(ratios(r).durable)}x`,
            us(runPerItem[i]!),
            nodeUs(runPerItem[i]!),
            int(runPerItem[i]!.redoBytes),
            s(hwm("bulk API"), 0),
            workerHwm.join(" / "),
            s(r.loadAverage),
          ];
        }),
      ],
    ),
  );
  for (const r of runs) {
    console.log(
      `\nwhere the CPU went, ${r.upload}, ${r.workers} worker${r.workers === 1 ? "" : "s"}${roundOf(r)} (ingest ${s(r.ingestS)} s, apply ${s(r.applyS)} s of wall time; 2 cores = 2 cpu s per s)`,
    );
    const phases = r.seal ? ["ingest", "apply", "seal"] : ["ingest", "apply"];
    console.log(processTable(r.processes, phases, ["idle", ...phases]));
    console.log(machineLine(r.machine, phases));
    console.log(statusTable(Object.entries(r.status).map(([label, counters]) => ({ label, counters }))));
    if (r.downstream) {
      console.log(
        `downstream: ${int(r.downstream.backlogAtEnd)} unpublished outbox rows at the job's end, drained ${s(r.downstream.drainedS)} s after it, ` +
          `search caught up ${s(r.downstream.searchCaughtUpS)} s after it; ${int(r.downstream.published)} event messages published`,
      );
    }
    const seal = sealCost(r);
    if (seal) {
      console.log(
        `sealing afterwards (not in end to end): ${int(seal.rows)} audit rows in ${s(seal.s)} s; per item MariaDB ` +
          `${seal.mariadbCpuUs ?? "-"} µs CPU and ${int(seal.redoBytes)} B redo, the sealer ${seal.sealerCpuUs} µs CPU`,
      );
    }
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
          ...raws.filter((r) => r.round === last.round).flatMap((r) => r.tables.map((t) => [r.variant, t.table, int(t.rows), s(t.mb, 1)])),
          ...last.tables.map((t) => [`pipeline`, t.table, int(t.rows), s(t.mb, 1)]),
        ],
      ),
    );
  }

  // One set of targets per upload mode and worker count: over several rounds, the median of the rounds.
  const groups = [...Map.groupBy(runs, (r) => `${r.upload}, ${r.workers}`).values()];
  const over = ROUNDS > 1 ? ` (median of ${ROUNDS})` : "";
  const targets = groups.flatMap((group) => {
    const { upload, workers } = group[0]!;
    const who = `${upload}, ${workers}`;
    const e2e = median(group.map((r) => r.endToEndS));
    const toRaw = median(group.map((r) => ratios(r).raw));
    const toDurable = median(group.map((r) => ratios(r).durable));
    const apiPeak = Math.max(...group.map((r) => r.processes.find((p) => p.label === "bulk API")?.vmHwmMb ?? NaN));
    /** Against 2 workers of the same round. */
    const vsTwo = group.flatMap((r) => {
      const two = runs.find((o) => o.upload === upload && o.workers === 2 && o.round === r.round);
      return two ? [r.endToEndS / two.endToEndS] : [];
    });
    const downstream = group.flatMap((r) => (r.downstream ? [r.downstream] : []));
    return [
      {
        workers: who,
        target: `end to end <= ${TARGET_RATIO}x raw`,
        actual: `${s(toRaw)}x (${s(toDurable)}x raw durable)${over}`,
        pass: toRaw <= TARGET_RATIO,
      },
      { workers: who, target: `end to end ${e2eTargetLabel}`, actual: `${s(e2e)} s${over}`, pass: e2e <= scaledE2eTarget },
      {
        workers: who,
        target: `bulk API peak RSS < ${TARGET_API_RSS_MB} MB`,
        actual: `${s(apiPeak, 0)} MB${ROUNDS > 1 ? " (highest)" : ""}`,
        pass: apiPeak < TARGET_API_RSS_MB,
      },
      ...(workers > 2 && vsTwo.length > 0
        ? [
            {
              workers: who,
              target: "no slower than 2 workers",
              actual: `${s(median(vsTwo))}x the time of 2 workers${vsTwo.length > 1 ? ` (median; rounds: ${vsTwo.map((v) => s(v)).join(", ")})` : ""}`,
              pass: median(vsTwo) <= 1,
            },
          ]
        : []),
      ...(downstream.length > 0
        ? [
            {
              workers: who,
              target: `outbox drained <= ${TARGET_DRAINED_S} s after the job`,
              actual: `${s(median(downstream.map((d) => d.drainedS)))} s${over}`,
              pass: median(downstream.map((d) => d.drainedS)) <= TARGET_DRAINED_S,
            },
            {
              workers: who,
              target: `search caught up <= ${TARGET_SEARCH_S} s after the job`,
              actual: `${s(median(downstream.map((d) => d.searchCaughtUpS)))} s${over}`,
              pass: median(downstream.map((d) => d.searchCaughtUpS)) <= TARGET_SEARCH_S,
            },
          ]
        : []),
    ];
  });
  console.log(
    `\n${table(
      ["upload, workers", "target", "actual", "result"],
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
      workerNodeArgs: WORKER_NODE_ARGS,
    },
    database,
    uploads: UPLOAD_MODES,
    downstream: DOWNSTREAM,
    rounds: ROUNDS,
    notes: {
      raw: "the generated CSV loaded as is; price to minor units and attributes to JSON inside INSERT … SELECT (timed)",
      rawDurable:
        "raw, then one product_changes row and one outbox_events row per product by INSERT … SELECT (the event payload is the product's JSON)",
    },
    /** Each round's raw and raw durable paths. */
    raws: raws.map((r, i) => ({ ...r, database: undefined, perItem: rawPerItem[i] })),
    runs: runs.map((r, i) => ({
      ...r,
      perItem: runPerItem[i],
      sealPerItem: sealCost(r),
      ratioToRaw: round(ratios(r).raw, 2),
      ratioToRawDurable: round(ratios(r).durable, 2),
    })),
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
