import { promises as fs, readFileSync } from "node:fs";
import path from "node:path";
import { trace, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { CompiledQuery, Kysely, MysqlDialect, sql, type IsolationLevel, type LogEvent, type QueryResult, type Transaction } from "kysely";
import { FileMigrationProvider, type Migration, type MigrationProvider, Migrator } from "kysely/migration";
import { createPool, type Pool, type SslOptions } from "mysql2";
import { deferWrite, enableDeferredWrites, executeBinary, stripDeferMark } from "./deferred-writes.ts";
import { unavailableBackend } from "../unavailable.ts";
import { useFastExecutePackets } from "./execute-packet.ts";

/**
 * QueryObserver sees every executed statement (SQL with placeholders, bound
 * values). shard names the Vitess shard target (`keyspace/shard`) of a
 * statement sent through one of shardTargets' databases (shards.ts), which
 * vtgate passes to that shard as it is; undefined for every other statement.
 */
export type QueryObserver = (sql: string, parameters: readonly unknown[], durationMs: number, shard?: string) => void;

export interface DatabaseOptions {
  /** mysql://user:password@host:port/database */
  url: string;
  /** Connections in the pool. */
  poolSize?: number;
  /** Called for each statement; tests use it to check Vitess readiness. */
  observe?: QueryObserver;
}

const tracer = trace.getTracer("stockroom.db");

/** The TLS modes of a database URL's ssl-mode parameter (as MySQL's clients name them). */
export const SSL_MODES = ["DISABLED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"] as const;

/** MysqlConnection is what mysql2 takes: the URL without stockroom's TLS parameters, and the TLS options they describe. */
export interface MysqlConnection {
  uri: string;
  ssl?: SslOptions;
}

/**
 * mysqlConnection reads the TLS parameters of a database URL, named as
 * MySQL's own clients name them, and returns mysql2's options:
 *
 *   mysql://user:pw@vtgate:15306/stockroom?ssl-mode=VERIFY_IDENTITY&ssl-ca=/secrets/db-ca.pem
 *
 * - ssl-mode: DISABLED (the default without ssl-ca), REQUIRED (encrypted,
 *   certificate not checked), VERIFY_CA (signed by the CA), VERIFY_IDENTITY
 *   (the default with ssl-ca: signed by the CA and naming the host);
 * - ssl-ca: a CA bundle file (PEM) to verify the server with; the system's CAs without it;
 * - ssl-cert, ssl-key: a client certificate and key (PEM files), for servers that verify clients.
 *
 * Files are read here, once per pool or connection. Any other query
 * parameter is left for mysql2.
 */
export function mysqlConnection(url: string): MysqlConnection {
  const parsed = new URL(url);
  const take = (name: string) => {
    const value = parsed.searchParams.get(name) ?? undefined;
    parsed.searchParams.delete(name);
    return value === "" ? undefined : value;
  };
  const rawMode = take("ssl-mode");
  const [ca, cert, key] = [take("ssl-ca"), take("ssl-cert"), take("ssl-key")];
  const mode = rawMode?.toUpperCase() ?? (ca ? "VERIFY_IDENTITY" : "DISABLED");
  if (!(SSL_MODES as readonly string[]).includes(mode)) {
    throw new Error(`database URL: ssl-mode must be one of ${SSL_MODES.join(", ")}, not "${rawMode}"`);
  }
  if ((cert === undefined) !== (key === undefined)) throw new Error("database URL: ssl-cert and ssl-key go together");
  if (mode === "DISABLED" && (ca || cert)) throw new Error("database URL: ssl-ca, ssl-cert and ssl-key need TLS, not ssl-mode=DISABLED");
  const uri = parsed.toString();
  if (mode === "DISABLED") return { uri };
  const verify = mode === "VERIFY_CA" || mode === "VERIFY_IDENTITY";
  return {
    uri,
    ssl: {
      rejectUnauthorized: verify,
      verifyIdentity: mode === "VERIFY_IDENTITY",
      ...(ca !== undefined && { ca: readFileSync(ca, "utf8") }),
      ...(cert !== undefined && { cert: readFileSync(cert, "utf8"), key: readFileSync(key!, "utf8") }),
    },
  };
}

/**
 * createDatabase opens a pooled Kysely instance over mysql2. Every statement
 * becomes a client span under the active RPC span (text with placeholders,
 * never values), recorded from Kysely's log hook after the query returns.
 */
export function createDatabase<DB>(options: DatabaseOptions): Kysely<DB> {
  const pool = createPool({
    ...mysqlConnection(options.url),
    connectionLimit: options.poolSize ?? 10,
    timezone: "Z",
    supportBigNumbers: true,
    charset: "utf8mb4",
    enableKeepAlive: true,
    // Deferred writes (deferred-writes.ts) travel with the next statement in one round trip.
    // Every value is still a bound parameter, escaped by mysql2.
    multipleStatements: true,
    // insertRows' prepared statements (a few shapes per table): each connection keeps at most this many, the
    // least recently used closed first, so pools × connections stay far below MariaDB's max_prepared_stmt_count
    // (16,382 for the whole server by default). mysql2's own default is 16,000 per connection.
    maxPreparedStatements: 32,
  });
  enableDeferredWrites(pool);
  // Prepared statements' executions (insertRows' blocks) encoded in two plain passes, byte for byte what mysql2 sends.
  useFastExecutePackets();
  const database = decodeURIComponent(new URL(options.url).pathname.slice(1));
  // vtgate takes `keyspace/shard` as a database name: every statement goes to that one shard.
  const shard = /^[^/@]+\/[^/@]+/.exec(database)?.[0];
  const observe = options.observe;
  const db = new Kysely<DB>({
    dialect: new MysqlDialect({ pool }),
    log(event: LogEvent) {
      const { parameters } = event.query;
      const sql = stripDeferMark(event.query.sql);
      observe?.(sql, parameters, event.queryDurationMillis, shard);
      const end = performance.timeOrigin + performance.now();
      const span = tracer.startSpan(spanName(sql), { kind: SpanKind.CLIENT, startTime: end - event.queryDurationMillis });
      // Attributes only for a span that is kept: unsampled and untraced statements (every one, without an OTLP endpoint) skip the work.
      if (span.isRecording()) {
        // A 1,000-row insert repeats its placeholder tuple 1,000 times: the head says what it is.
        span.setAttributes({
          "db.system.name": "mysql",
          "db.namespace": database,
          "db.query.text": sql.length > 2048 ? `${sql.slice(0, 2048)}…` : sql,
        });
        if (event.level === "error") span.setStatus({ code: SpanStatusCode.ERROR, message: errorCode(event.error) });
      }
      span.end(end);
    },
  });
  pools.set(db, pool);
  created.set(db, options);
  // Kysely's destroy ends the pool: what hangs off this database (shard targets) closes first.
  const end = pool.end.bind(pool);
  const hooks = new Set<() => Promise<void>>();
  closeHooks.set(db, hooks);
  pool.end = ((callback?: (error: unknown) => void) => {
    // A connection that could not be made or was already lost has nothing to end: a pool closed while its
    // database is away (a tool stopping on the outage, a service shut down during one) ends without an error.
    const ended = (error: unknown) => callback?.(unavailableBackend(error) ? null : error);
    void Promise.allSettled([...hooks].map((hook) => hook())).then(() => end(ended as never));
  }) as typeof pool.end;
  return db;
}

/** created maps each createDatabase instance to the options it was made with (shards.ts opens its shard targets alike). */
const created = new WeakMap<object, DatabaseOptions>();
const closeHooks = new WeakMap<object, Set<() => Promise<void>>>();

/** databaseOptions returns the options a createDatabase instance was made with, or undefined for any other Kysely. */
export function databaseOptions(db: object): Readonly<DatabaseOptions> | undefined {
  return created.get(db);
}

/**
 * onDestroy runs close (awaited) when db is destroyed, before its pool ends;
 * it returns false if db is not a createDatabase instance.
 */
export function onDestroy(db: object, close: () => Promise<void>): boolean {
  const hooks = closeHooks.get(db);
  hooks?.add(close);
  return hooks !== undefined;
}

/** pools maps each createDatabase instance to its mysql2 pool, for poolStats. */
const pools = new WeakMap<object, Pool>();

export interface PoolStats {
  /** Connections lent out to a query or transaction. */
  inUse: number;
  /** Open connections waiting for work. */
  free: number;
  /** Callers waiting for a connection: the pool is saturated. */
  queued: number;
  limit: number;
}

/**
 * poolStats reads the connection counts of a createDatabase instance's pool
 * (metrics.ts exports them). mysql2 keeps them in private queues; if a
 * release moves them, this returns undefined rather than wrong numbers.
 */
export function poolStats(db: object): PoolStats | undefined {
  const pool = pools.get(db) as unknown as
    | {
        _allConnections?: { length?: unknown };
        _freeConnections?: { length?: unknown };
        _connectionQueue?: { length?: unknown };
        config?: { connectionLimit?: unknown };
      }
    | undefined;
  const all = pool?._allConnections?.length;
  const free = pool?._freeConnections?.length;
  const queued = pool?._connectionQueue?.length;
  const limit = pool?.config?.connectionLimit;
  if (typeof all !== "number" || typeof free !== "number" || typeof queued !== "number" || typeof limit !== "number") return undefined;
  return { inUse: all - free, free, queued, limit };
}

/**
 * insertRows writes many rows with one multi-row INSERT (optionally ON
 * DUPLICATE KEY UPDATE of the named columns from the new values). It builds
 * the statement directly: Kysely's values() parses and compiles every cell,
 * which cost about half of a bulk worker's CPU on 1,000-row chunks. Columns
 * come from the first row's keys, in order; every row must have the same keys.
 * Values are bound parameters, as with Kysely. deferred: true queues the
 * statement to ride with the transaction's next one (deferred-writes.ts),
 * except what goes as a prepared statement (BINARY_BLOCKS, BLOB_MAX_ROWS):
 * that runs at once, so an error it raises (a duplicate key) surfaces there
 * instead of at the statement it would have ridden with.
 *
 * With onlyIf (an SQL condition over the current row and VALUES(…)), each
 * updated column takes its new value only where the condition holds, e.g.
 * to never overwrite a newer version. MySQL assigns left to right and later
 * conditions see columns already assigned, so list the columns the
 * condition reads last, in an order where that stays correct.
 */
export async function insertRows<Row extends object>(
  // biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
  db: Kysely<any> | Transaction<any>,
  table: string,
  rows: readonly Row[],
  options: { onDuplicateKeyUpdate?: readonly string[]; onlyIf?: string; deferred?: boolean } = {},
): Promise<void> {
  if (rows.length === 0) return;
  const columns = Object.keys(rows[0]!);
  /** valuesOf lists the bound values of rows [from, to), row by row. */
  const valuesOf = (from: number, to: number) => {
    const values = new Array<unknown>((to - from) * columns.length);
    let i = 0;
    for (let r = from; r < to; r++) for (const column of columns) values[i++] = (rows[r] as Record<string, unknown>)[column] ?? null;
    return values;
  };
  let suffix = "";
  if (options.onDuplicateKeyUpdate?.length) {
    const { onlyIf } = options;
    const assign = (c: string) => (onlyIf ? `if(${onlyIf}, values(${c}), ${c})` : `values(${c})`);
    suffix = ` on duplicate key update ${options.onDuplicateKeyUpdate.map((c) => `${quoteName(c)} = ${assign(quoteName(c))}`).join(", ")}`;
  }
  // Many rows go in blocks of BINARY_BLOCKS' sizes as prepared statements (executeBinary), the rest as text.
  let done = 0;
  for (const size of BINARY_BLOCKS) {
    if (rows.length - done < size) continue;
    const sql = cachedInsertText(table, columns, size) + suffix;
    for (; rows.length - done >= size; done += size) await executeBinary(db, { sql, parameters: valuesOf(done, done + size) });
  }
  const left = rows.length - done;
  if (left === 0) return;
  const text = (left === 1 ? cachedInsertText(table, columns, 1) : insertText(table, columns, left)) + suffix;
  const rest = valuesOf(done, rows.length);
  // A few rows carrying a large binary value (a batch of events, a staged chunk) go as a prepared statement too:
  // as text the value would be hex, twice its size, built, measured and parsed.
  if (left <= BLOB_MAX_ROWS && rest.some((v) => v instanceof Uint8Array && v.length >= BLOB_MIN_BYTES))
    await executeBinary(db, { sql: text, parameters: rest });
  else if (options.deferred) await deferWrite(db, { sql: text, parameters: rest });
  else await db.executeQuery(CompiledQuery.raw(text, rest));
}

/**
 * BINARY_BLOCKS: the row counts insertRows sends as prepared statements,
 * largest first (1,000 rows: 512 + 256 + 128 + 64 of them, and 40 as text).
 * A few fixed shapes keep each connection's prepared statements few (four
 * per table and column set), well under MariaDB's max_prepared_stmt_count
 * across every pool; below 64 rows the text protocol costs about as much.
 */
const BINARY_BLOCKS = [512, 256, 128, 64] as const;

/** Up to BLOB_MAX_ROWS rows with a binary value of BLOB_MIN_BYTES or more go as a prepared statement (a shape per row count). */
const BLOB_MAX_ROWS = 4;
const BLOB_MIN_BYTES = 16 * 1024;

function insertText(table: string, columns: readonly string[], rows: number): string {
  const tuple = `(${columns.map(() => "?").join(", ")})`;
  return `insert into ${quoteName(table)} (${columns.map(quoteName).join(", ")}) values ${new Array<string>(rows).fill(tuple).join(", ")}`;
}

/**
 * insertTexts holds the insert texts that repeat, by table, row count and
 * columns: the one-row inserts of per-call writes (an audit entry, an outbox
 * event, an order) and insertRows' prepared blocks.
 */
const insertTexts = new Map<string, string>();

function cachedInsertText(table: string, columns: readonly string[], rows: number): string {
  const key = `${table} ${rows} ${columns.join(" ")}`;
  let text = insertTexts.get(key);
  if (text === undefined) {
    text = insertText(table, columns, rows);
    if (insertTexts.size >= 1_000) insertTexts.clear();
    insertTexts.set(key, text);
  }
  return text;
}

/**
 * runStatement executes one fixed SQL statement with its bound values through
 * Kysely, so query observers, logs, spans and deferred writes see it like any
 * other. The hottest per-call statements (a product's lock and write, an
 * idempotency claim) use it instead of Kysely's builder: building and
 * compiling the same query again on every call was about a tenth of the
 * catalog and orders servers' CPU per call. Values are bound parameters,
 * escaped by mysql2, as with the builder.
 */
export function runStatement<R>(
  // biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
  db: Kysely<any> | Transaction<any>,
  text: string,
  parameters: unknown[],
): Promise<QueryResult<R>> {
  return db.executeQuery<R>(CompiledQuery.raw(text, parameters));
}

function quoteName(name: string): string {
  if (!/^\w+$/.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return `\`${name}\``;
}

/**
 * spanNames remembers the span name of each short statement text seen (the
 * texts are the code's own, so few; bounded all the same): every statement
 * of every call is named, and matching the patterns costs more than a lookup.
 */
const spanNames = new Map<string, string>();
const SPAN_NAMES_MAX = 2_000;

function spanName(sql: string): string {
  if (sql.length > 1024) return parseSpanName(sql);
  let name = spanNames.get(sql);
  if (name === undefined) {
    name = parseSpanName(sql);
    if (spanNames.size >= SPAN_NAMES_MAX) spanNames.clear();
    spanNames.set(sql, name);
  }
  return name;
}

function parseSpanName(sql: string): string {
  const update = /^\s*update\s+`?(\w+)`?/i.exec(sql);
  if (update) return `UPDATE ${update[1]}`;
  const m = /^\s*(\w+)(?:.*?\b(?:from|into|update)\s+`?(\w+)`?)?/is.exec(sql);
  return m ? `${m[1]!.toUpperCase()}${m[2] ? ` ${m[2]}` : ""}` : "SQL";
}

function errorCode(error: unknown): string {
  return (error as { code?: string })?.code ?? "error";
}

/**
 * jsonColumn reads a JSON column: MySQL and newer MariaDB metadata make
 * mysql2 parse it already, older servers send the text.
 */
export function jsonColumn<T>(value: unknown): T {
  return (typeof value === "string" ? JSON.parse(value) : value) as T;
}

/** mysqlErrno returns the server error number of a mysql2 error, if it has one. */
export function mysqlErrno(error: unknown): number | undefined {
  const errno = (error as { errno?: unknown })?.errno;
  return typeof errno === "number" ? errno : undefined;
}

/** ER_DUP_ENTRY: a unique key already holds the value. */
export const ER_DUP_ENTRY = 1062;

/** ER_BAD_NULL_ERROR: NULL for a NOT NULL column (a single-row insert fails on it in any SQL mode). */
export const ER_BAD_NULL_ERROR = 1048;

/** A CHECK constraint failed: ER_CONSTRAINT_FAILED on MariaDB, ER_CHECK_CONSTRAINT_VIOLATED on MySQL. */
export const CHECK_VIOLATIONS = [4025, 3819] as const;
const ER_LOCK_DEADLOCK = 1213;

/**
 * inTransaction runs fn in one transaction and retries it (up to attempts
 * times, with jitter) when InnoDB picks it as a deadlock victim: the whole
 * transaction was rolled back, so running it again is safe.
 */
export async function inTransaction<DB, T>(
  db: Kysely<DB>,
  fn: (trx: Transaction<DB>) => Promise<T>,
  options: { attempts?: number; isolation?: IsolationLevel } = {},
): Promise<T> {
  const attempts = options.attempts ?? 4;
  const { isolation } = options;
  const viaVtgate = isolation !== undefined && (await isVitessCached(db));
  for (let attempt = 1; ; attempt++) {
    try {
      if (viaVtgate) return await db.connection().execute((conn) => withSessionIsolation(conn, isolation, fn));
      const trx = db.transaction();
      return await (isolation ? trx.setIsolationLevel(isolation) : trx).execute(fn);
    } catch (error) {
      if (attempt >= attempts || mysqlErrno(error) !== ER_LOCK_DEADLOCK) throw error;
      await new Promise((r) => setTimeout(r, Math.random() * 5 * attempt));
    }
  }
}

const vitessByDb = new WeakMap<object, Promise<boolean>>();

/** isVitessCached asks isVitess once per database instance. */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database, whatever its tables
export function isVitessCached(db: Kysely<any>): Promise<boolean> {
  let known = vitessByDb.get(db);
  if (!known) {
    known = isVitess(db);
    known.catch(() => vitessByDb.delete(db));
    vitessByDb.set(db, known);
  }
  return known;
}

/**
 * The session variable holding the isolation level (MySQL 8 and MariaDB
 * 11.1+ name it transaction_isolation, older MariaDB tx_isolation) and the
 * level every session starts at, which is what a session goes back to after
 * each transaction here: both read once per process.
 */
let sessionIsolation: Promise<{ variable: "transaction_isolation" | "tx_isolation"; initial: string }> | undefined;

/**
 * withSessionIsolation runs a transaction at an isolation level through
 * vtgate. vtgate does not keep `SET TRANSACTION ISOLATION LEVEL`'s
 * next-transaction-only scope: it makes it a session setting, checked with
 * @@transaction_isolation, which MariaDB before 11.1 lacks (errno 1193 from
 * every statement after it), and which would otherwise stay on the pooled
 * connection for whatever transaction uses it next. So on Vitess the session
 * level is set on one connection, the transaction runs, and the session goes
 * back to the level sessions start at.
 */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database, whatever its tables
async function withSessionIsolation<T>(conn: Kysely<any>, level: IsolationLevel, fn: (trx: Transaction<any>) => Promise<T>): Promise<T> {
  sessionIsolation ??= readSessionIsolation(conn).catch((error: unknown) => {
    sessionIsolation = undefined;
    throw error;
  });
  const { variable, initial } = await sessionIsolation;
  const name = sql.raw(variable);
  await sql`SET SESSION ${name} = ${level.toUpperCase().replace(" ", "-")}`.execute(conn);
  try {
    return await conn.transaction().execute(fn);
  } finally {
    await sql`SET SESSION ${name} = ${initial}`.execute(conn);
  }
}

// biome-ignore lint/suspicious/noExplicitAny: works on any package's database, whatever its tables
async function readSessionIsolation(conn: Kysely<any>): Promise<{ variable: "transaction_isolation" | "tx_isolation"; initial: string }> {
  for (const variable of ["transaction_isolation", "tx_isolation"] as const) {
    try {
      const { rows } = await sql<{ level: string }>`SELECT @@${sql.raw(variable)} AS level`.execute(conn);
      return { variable, initial: rows[0]?.level ?? "REPEATABLE-READ" };
    } catch (error) {
      if (variable === "tx_isolation" || mysqlErrno(error) !== ER_UNKNOWN_SYSTEM_VARIABLE) throw error;
    }
  }
  throw new Error("unreachable");
}

const ER_UNKNOWN_SYSTEM_VARIABLE = 1193;

/** MigrationSet is one service's migration folder with its own bookkeeping table. */
export interface MigrationSet {
  name: string;
  folder: string;
  /**
   * Migrations this set took over from another set (files moved between
   * packages with the tables they create). Where the other set's bookkeeping
   * table records them as applied, the record moves to this set's table
   * before any set migrates, so they are never run twice.
   */
  adopts?: { set: string; migrations: readonly string[] }[];
  /**
   * Only the migrations (file names without extension) this returns true for
   * are seen; the default is all of them. For tests that stage a database at
   * an earlier schema, e.g. to run one migration under load. It must keep
   * every migration already applied (Kysely refuses a database that ran a
   * migration it does not see) and may leave out only the latest ones.
   */
  only?: (name: string) => boolean;
}

/**
 * migrateToLatest applies each set's pending migrations in order. Kysely holds
 * a MySQL named lock while migrating, so concurrent starts are safe. A set
 * listed more than once (several modules of one process need it) runs once,
 * in the place of its first occurrence.
 */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
export async function migrateToLatest(db: Kysely<any>, listed: MigrationSet[]): Promise<string[]> {
  const names = new Set<string>();
  const sets = listed.filter((set) => !names.has(set.name) && names.add(set.name));
  for (const set of sets) for (const adopted of set.adopts ?? []) await handOver(db, adopted.set, set.name, adopted.migrations);
  const applied: string[] = [];
  for (const set of sets) {
    const migrator = new Migrator({
      db,
      provider: filtered(new FileMigrationProvider({ fs, path, migrationFolder: set.folder }), set.only),
      migrationTableName: `kysely_migration_${set.name}`,
      migrationLockTableName: `kysely_migration_lock_${set.name}`,
    });
    const { error, results } = await migrator.migrateToLatest();
    // The cause's words too: a migrate task's log, or a test's report, may show only the message.
    const why = error instanceof Error ? `: ${error.message}` : "";
    for (const r of results ?? []) {
      if (r.status === "Error") throw new Error(`migration ${set.name}/${r.migrationName} failed${why}`, { cause: error });
      if (r.status === "Success") applied.push(`${set.name}/${r.migrationName}`);
    }
    if (error) throw new Error(`migrations for ${set.name} failed${why}`, { cause: error });
  }
  if (applied.length > 0 && (await isVitess(db))) await waitForVtgateSchema(db);
  return applied;
}

/** filtered narrows a migration provider to the names only accepts (MigrationSet.only). */
function filtered(provider: MigrationProvider, only: ((name: string) => boolean) | undefined): MigrationProvider {
  if (!only) return provider;
  return {
    async getMigrations(): Promise<Record<string, Migration>> {
      return Object.fromEntries(Object.entries(await provider.getMigrations()).filter(([name]) => only(name)));
    },
  };
}

/** isVitessVersion: vtgate answers `@@version` with its MySQL version followed by -Vitess. */
function isVitessVersion(version: unknown): boolean {
  return String(version).endsWith("-Vitess");
}

/** isVitess: the database answers through vtgate (its version ends with -Vitess). */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database, whatever its tables
export async function isVitess(db: Kysely<any>): Promise<boolean> {
  const { rows } = await sql<{ version: string }>`SELECT @@version AS version`.execute(db);
  return isVitessVersion(rows[0]?.version);
}

/**
 * waitForVtgateSchema waits until vtgate's tracked schema has every table and
 * column the shards have. vtgate learns a DDL's effect from the tablets a
 * moment later, and meanwhile plans with what it knew: with the old columns
 * it expands SELECT * to the old list (a new column silently missing from
 * every row) and refuses a new column by name (errno 1054); not knowing a new
 * table yet, it refuses a cross-shard ORDER BY on it (VT09015, schema
 * tracking required). So migrations return only once vtgate sees what they
 * did, before the code that reads it runs; a migration that runs DML after
 * its own DDL waits for it in between (vtgate, reloading a table an ALTER
 * rebuilt, refused a column the table had: "column 'seal_seq' not found").
 * vtgate's view is read from its plan for SELECT *, which names the columns
 * once it knows them.
 */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database, whatever its tables
export async function waitForVtgateSchema(db: Kysely<any>, timeoutMs = 60_000): Promise<void> {
  const { rows } = await sql<{ t: string; c: string }>`SELECT DISTINCT table_name AS t, column_name AS c
    FROM information_schema.columns WHERE table_schema = DATABASE()`.execute(db);
  const want = new Map<string, Set<string>>();
  for (const { t, c } of rows) want.set(t, (want.get(t) ?? new Set()).add(c));
  const deadline = Date.now() + timeoutMs;
  for (const [table, columns] of want) {
    for (;;) {
      const plan = await sql.raw<Record<string, string>>(`VEXPLAIN PLAN SELECT * FROM ${quoteName(table)}`).execute(db);
      const text = String(Object.values(plan.rows[0] ?? {})[0] ?? "");
      const query = /"Query": "(select .*?)"/.exec(text)?.[1] ?? "";
      const named = new Set(
        /^select (.*) from /
          .exec(query)?.[1]
          ?.split(", ")
          .map((c) => c.replace(/`/g, "")) ?? [],
      );
      if ([...columns].every((c) => named.has(c))) break;
      if (Date.now() > deadline) throw new Error(`vtgate's schema of ${table} still lacks columns after ${timeoutMs} ms: ${query}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * handOver moves the records of the named migrations from set `from`'s
 * bookkeeping table to set `to`'s (created here in Kysely's own shape if it
 * does not exist yet), each record in one transaction; a repeat, or a
 * database where `from` never ran them, moves nothing.
 */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
async function handOver(db: Kysely<any>, from: string, to: string, names: readonly string[]): Promise<void> {
  const source = `kysely_migration_${from}`;
  const target = `kysely_migration_${to}`;
  const tables = await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = DATABASE() AND table_name = ${source}`.execute(db);
  if (tables.rows.length === 0 || names.length === 0) return;
  await db.schema
    .createTable(target)
    .ifNotExists()
    .addColumn("name", "varchar(255)", (col) => col.notNull().primaryKey())
    .addColumn("timestamp", "varchar(255)", (col) => col.notNull())
    .execute();
  // One transaction per migration: on Vitess both tables are sharded by name, so each name's two rows share a shard,
  // while the names of a set spread over shards and one transaction for all of them would span shards.
  for (const name of names) {
    await db.transaction().execute(async (trx) => {
      await sql`INSERT IGNORE INTO ${sql.table(target)} (name, timestamp)
        SELECT name, timestamp FROM ${sql.table(source)} WHERE name = ${name}`.execute(trx);
      await sql`DELETE FROM ${sql.table(source)} WHERE name = ${name}`.execute(trx);
    });
  }
}

/** ensureDatabase creates the database named in url if it is missing. */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`database name "${name}" must match [A-Za-z0-9_]+`);
  target.pathname = "/";
  const { createConnection } = await import("mysql2/promise");
  const conn = await createConnection(mysqlConnection(target.toString()));
  try {
    await conn.query(`CREATE DATABASE IF NOT EXISTS \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`);
  } finally {
    await conn.end();
  }
}

/**
 * dropDatabase removes the database named in url (tests only). Behind vtgate
 * the database is a keyspace, which vtgate cannot drop (DROP DATABASE is a
 * silent no-op there): its tables are dropped instead, on every shard.
 */
export async function dropDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  target.pathname = "/";
  const { createConnection } = await import("mysql2/promise");
  const conn = await createConnection(mysqlConnection(target.toString()));
  try {
    const [version] = await conn.query<import("mysql2").RowDataPacket[]>("SELECT @@version AS version");
    if (!isVitessVersion(version[0]?.["version"])) {
      await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
      return;
    }
    const [tables] = await conn.query<import("mysql2").RowDataPacket[]>(`SHOW TABLES FROM \`${name}\``);
    const names = tables.map((row) => `\`${name}\`.\`${String(Object.values(row)[0])}\``);
    if (names.length > 0) await conn.query(`DROP TABLE IF EXISTS ${names.join(", ")}`);
  } finally {
    await conn.end();
  }
}

/** commonMigrations is the folder of the tables every service shares. */
export const commonMigrations: MigrationSet = {
  name: "common",
  folder: path.join(import.meta.dirname, "..", "..", "migrations"),
};

/** deleteInBatches repeats a DELETE … LIMIT batch (run) until it deletes fewer than batch rows, and returns how many it deleted. */
export async function deleteInBatches(run: () => Promise<{ numDeletedRows: bigint }>, batch: number): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = Number((await run()).numDeletedRows);
    total += deleted;
    if (deleted < batch) return total;
  }
}

/** How alterTableOnline ran a change: INSTANT (metadata only) or NOCOPY with LOCK=NONE (in place, writes go on). */
export type OnlineAlgorithm = "INSTANT" | "NOCOPY" | "INPLACE";

/** ER_ALTER_OPERATION_NOT_SUPPORTED(_REASON): the ALGORITHM or LOCK asked for cannot do this change. */
const ALGORITHM_REFUSED = new Set([1845, 1846]);
const ER_PARSE_ERROR = 1064;

/** OnlineAlterRefusedError: the change would copy the table (or block its writes), so it was not made. */
export class OnlineAlterRefusedError extends Error {
  override name = "OnlineAlterRefusedError";
}

/**
 * alterTableOnline makes a schema change on a live table without copying it
 * or blocking writes, or not at all. It asks for ALGORITHM=INSTANT (a
 * metadata change: adding a column, a default), then ALGORITHM=NOCOPY,
 * LOCK=NONE (MariaDB: in place, e.g. adding an index; MySQL 8, which has no
 * NOCOPY, gets ALGORITHM=INPLACE, LOCK=NONE), and refuses with
 * OnlineAlterRefusedError when neither is possible: a change that would copy
 * a table of millions of products belongs in an expand/contract sequence or
 * an online schema change tool, not in a start-up migration. On Vitess the
 * same statement goes through vtgate to every shard (ddl_strategy direct).
 */
export async function alterTableOnline(
  // biome-ignore lint/suspicious/noExplicitAny: works on any package's database, whatever its tables
  db: Kysely<any>,
  table: string,
  changes: readonly string[],
  options: { lockWaitSeconds?: number; attempts?: number } = {},
): Promise<OnlineAlgorithm> {
  if (!/^[A-Za-z0-9_]+$/.test(table)) throw new Error(`table name "${table}" must match [A-Za-z0-9_]+`);
  const lockWaitSeconds = options.lockWaitSeconds ?? 1;
  const attempts = options.attempts ?? 10;
  // One connection: the session's lock_wait_timeout bounds the wait for the table's metadata lock.
  return db.connection().execute(async (conn) => {
    // Restored by value: vtgate refuses SET … = DEFAULT.
    const { rows } = await sql<{ wait: number | string }>`SELECT @@SESSION.lock_wait_timeout AS wait`.execute(conn);
    const previous = Number(rows[0]?.wait ?? 31_536_000);
    await sql`SET SESSION lock_wait_timeout = ${sql.lit(lockWaitSeconds)}`.execute(conn);
    try {
      let refusal: unknown;
      for (const [algorithm, clause] of [
        ["INSTANT", "ALGORITHM=INSTANT"],
        ["NOCOPY", "ALGORITHM=NOCOPY, LOCK=NONE"],
        ["INPLACE", "ALGORITHM=INPLACE, LOCK=NONE"],
      ] as const) {
        try {
          await withMetadataLock(() => sql.raw(`ALTER TABLE \`${table}\` ${changes.join(", ")}, ${clause}`).execute(conn), attempts);
          return algorithm;
        } catch (error) {
          const errno = mysqlErrno(error);
          // INPLACE may rebuild the table on MariaDB (it has NOCOPY for what does not); only MySQL, which cannot parse NOCOPY, tries it.
          if (algorithm === "NOCOPY" && errno === ER_PARSE_ERROR) continue;
          if (errno === undefined || !ALGORITHM_REFUSED.has(errno)) throw error;
          refusal = error;
          if (algorithm === "NOCOPY") break;
        }
      }
      throw new OnlineAlterRefusedError(
        `refused: ALTER TABLE ${table} ${changes.join(", ")} cannot run without copying the table or blocking its writes ` +
          `(${(refusal as Error).message}); split it into expand/contract steps the database does in place, or use an online schema change tool`,
        { cause: refusal },
      );
    } finally {
      await sql`SET SESSION lock_wait_timeout = ${sql.lit(previous)}`.execute(conn);
    }
  });
}

const ER_LOCK_WAIT_TIMEOUT = 1205;

/**
 * withMetadataLock retries a DDL statement that timed out waiting for its
 * table's metadata lock. Even an instant change needs that lock for a
 * moment, so it waits for the transactions using the table to end, and every
 * statement arriving meanwhile queues behind it: a short lock_wait_timeout
 * and a retry keep a long transaction from stalling the table's traffic.
 */
async function withMetadataLock<T>(run: () => Promise<T>, attempts: number): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (error) {
      if (attempt >= attempts || mysqlErrno(error) !== ER_LOCK_WAIT_TIMEOUT) throw error;
      await new Promise((r) => setTimeout(r, 200 * attempt));
    }
  }
}
