/**
 * Issue 17's expand migration (2026_12_03_090000_add_products_merchandising_fields)
 * on a 1,000,000-product table under a load of product updates, run by
 * `online-migration.test.ts` (what the migration does to the table: INSTANT,
 * no copy, old rows read as not set) and by `npm run bench:migration` (how
 * long it takes and what it does to the updates' p99: timings belong to a
 * benchmark, not to a test that a busy machine can fail).
 *
 * The database is migrated up to the migration before it (MigrationSet.only),
 * filled with 1,000,000 products of 4 merchants (MariaDB's sequence engine),
 * and then a fixed load of title/price updates runs before, during and after
 * the migration, which runs through migrateToLatest like a release's, in a
 * process of its own as the Nomad migrate task runs it (in this process its
 * module loading would stall the load's event loop and count as latency).
 *
 * The load is SQL, not the RPC: this release's catalog writes every column
 * of a product (writeLockedProduct), the new ones included, so its
 * UpdateProduct fails on a table without them; during a real migration the
 * previous release serves the traffic. The load is that release's write
 * transaction, shaped as the product-write port sends it: the locking read
 * (`SELECT * … FOR UPDATE`, carrying the BEGIN), then the
 * `UPDATE … WHERE merchant_id = ? AND sku = ? AND version = ?` riding with
 * the COMMIT (deferred writes). The audit and outbox inserts that also ride
 * with the COMMIT are left out: they do not touch products, whose metadata
 * lock is what an ALTER contends for. After the migration the real
 * UpdateProduct runs over gRPC, as a check that the new release works on the
 * migrated table.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { sql, type Kysely } from "kysely";
import {
  commonMigrations,
  createDatabase,
  deferWrite,
  ensureDatabase,
  inTransaction,
  type MigrationSet,
  migrateToLatest,
} from "@stockroom/common/db";
import { createMerchant } from "@stockroom/common/rpc";
import { dropTestDatabase, startTestApi, testDatabaseUrl, type TestMerchant } from "@stockroom/common/testing";
import { catalogModule } from "../src/module.ts";
import type { CatalogTables } from "../src/store.ts";
import { CatalogService } from "./helpers.ts";

export const MIGRATION = "2026_12_03_090000_add_products_merchandising_fields";
const PRODUCTS = 1_000_000;
const MERCHANTS = 4;
const CONCURRENCY = 4;
/** Updates go to 2,000 SKUs spread over the whole table (every 500th). */
const HOT = 2_000;

interface Sample {
  startMs: number;
  ms: number;
}

function p99(samples: readonly Sample[]): number {
  const sorted = samples.map((s) => s.ms).sort((a, b) => a - b);
  return sorted[Math.ceil(sorted.length * 0.99) - 1]!;
}

const round = (ms: number) => Math.round(ms * 10) / 10;

/** load runs `calls` calls of `call` with CONCURRENCY in flight; with `until`, it also keeps going until that settles. */
async function load(
  calls: number,
  call: (n: number) => Promise<void>,
  options: { until?: Promise<unknown>; onCall?: (done: number) => void } = {},
) {
  const samples: Sample[] = [];
  let settled = options.until === undefined;
  options.until?.then(
    () => (settled = true),
    () => (settled = true),
  );
  let issued = 0;
  const worker = async () => {
    while (issued < calls || !settled) {
      const n = issued++;
      const start = performance.now();
      await call(n);
      samples.push({ startMs: start, ms: performance.now() - start });
      options.onCall?.(samples.length);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return samples;
}

/**
 * MIGRATE is a process that opens the database, waits for a line on stdin,
 * then runs migrateToLatest over the sets in MIGRATION_SETS (JSON) and
 * prints what it applied, how long that took and when each ALTER TABLE
 * statement ran (alterTableOnline's attempts; the rest of the time is
 * Kysely's bookkeeping and loading the migration files).
 */
const MIGRATE = `
import { createDatabase, migrateToLatest } from "@stockroom/common/db";
import { createInterface } from "node:readline";
const alters = [];
// Each ALTER as [start, end] in epoch milliseconds (performance.timeOrigin + now(), comparable across processes).
const observe = (sql, _parameters, ms) => {
  const end = performance.timeOrigin + performance.now();
  if (/^alter table/i.test(sql)) alters.push([end - ms, end]);
};
const db = createDatabase({ url: process.env.DATABASE_URL, poolSize: 1, observe });
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
console.log("ready");
await lines.next();
const start = performance.now();
const applied = await migrateToLatest(db, JSON.parse(process.env.MIGRATION_SETS));
console.log(JSON.stringify({ applied, ms: performance.now() - start, alters }));
await db.destroy();
process.exit(0);
`;

/** startMigrationProcess starts MIGRATE and resolves once it is ready; go() runs the migration. */
async function startMigrationProcess(url: string, sets: MigrationSet[]) {
  const child = spawn(process.execPath, ["--input-type=module", "-e", MIGRATE], {
    cwd: path.join(import.meta.dirname, ".."),
    env: { ...process.env, DATABASE_URL: url, MIGRATION_SETS: JSON.stringify(sets) },
    stdio: ["pipe", "pipe", "inherit"],
  });
  const lines: string[] = [];
  let waiter: (() => void) | undefined;
  child.stdout.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    lines.push(...chunk.split("\n").filter((l) => l !== ""));
    waiter?.();
  });
  const nextLine = async () => {
    while (lines.length === 0) {
      await Promise.race([
        new Promise<void>((r) => (waiter = r)),
        once(child, "exit").then(() => Promise.reject(new Error("migration process exited"))),
      ]);
    }
    return lines.shift()!;
  };
  if ((await nextLine()) !== "ready") throw new Error("migration process did not start");
  return {
    async go(): Promise<{ applied: string[]; ms: number; alters: [number, number][] }> {
      child.stdin.write("go\n");
      return JSON.parse(await nextLine());
    },
    kill: () => child.kill(),
  };
}

/** innodbState reads what a table copy would change (InnoDB's table id) and InnoDB's count of instant column changes. */
async function innodbState(db: Kysely<CatalogTables>): Promise<{ tableId: number; instantColumns: number }> {
  const table = await sql<{ id: number }>`SELECT TABLE_ID AS id FROM information_schema.INNODB_SYS_TABLES
    WHERE NAME = CONCAT(DATABASE(), '/products')`.execute(db);
  const status = await sql<{ Value: string }>`SHOW GLOBAL STATUS LIKE 'Innodb_instant_alter_column'`.execute(db);
  return { tableId: Number(table.rows[0]!.id), instantColumns: Number(status.rows[0]?.Value ?? 0) };
}

export interface ExpandMigrationRun {
  /** What migrateToLatest applied: MIGRATION first, then the catalog's later ones. */
  applied: string[];
  /** "INSTANT", "in place", or "COPY (table id changed)". */
  algorithm: string;
  /** The catalog's GetProduct of an old row after the migration, over gRPC. */
  oldProduct: { brand: string; gtin: string; weightGrams: unknown; compareAtPrice: unknown };
  figures: {
    fillMs: number;
    migrationMs: number;
    alterStatementsMs: number[];
    p99BeforeMs: number;
    p99DuringMs: number;
    p99AfterMs: number;
    callsDuring: number;
    callsOverlappingMigration: number;
    maxOverlappingMs: number;
    callsUnderAlter: number;
    maxUnderAlterMs: number;
    p99DuringNotUnderAlterMs: number;
    rpcP99AfterMs: number;
  };
}

/**
 * runExpandMigration runs the whole scenario in database `name` (dropped at
 * the end) with `calls` updates before, during and after the migration.
 */
export async function runExpandMigration(name: string, calls = 300): Promise<ExpandMigrationRun> {
  const url = testDatabaseUrl(name);
  await ensureDatabase(url);
  const db = createDatabase<CatalogTables>({ url, poolSize: CONCURRENCY + 2 });
  const migrator = createDatabase<CatalogTables>({ url, poolSize: 2 });
  let migrate: Awaited<ReturnType<typeof startMigrationProcess>> | undefined;
  try {
    const sets = [commonMigrations, ...catalogModule(db).migrations];
    // The catalog as it was before MIGRATION: Kysely refuses to run a migration older than one already run.
    const staged = sets.map((set) => (set.name === "catalog" ? { ...set, only: (migration: string) => migration < MIGRATION } : set));
    if ((await migrateToLatest(migrator, staged)).includes(`catalog/${MIGRATION}`)) throw new Error(`${MIGRATION} ran early`);

    const merchants: TestMerchant[] = [];
    for (let i = 0; i < MERCHANTS; i++) merchants.push(await createMerchant(db, `Merchant ${i}`));
    const ids = merchants.map((m) => m.merchantId);
    const perMerchant = PRODUCTS / MERCHANTS;
    const fillStart = performance.now();
    // In primary-key order per merchant; every NOT NULL column valid (the CHECKs hold: stock and price ≥ 0).
    await sql`INSERT INTO products (merchant_id, sku, product_id, title, description, price_minor, currency, stock, status,
      attributes, version, created_at, updated_at)
    SELECT ELT(1 + seq DIV ${perMerchant}, ${sql.join(ids)}), CONCAT('SKU-', LPAD(seq, 7, '0')), CONCAT('01PRODUCT', LPAD(seq, 17, '0')),
      CONCAT('Product ', seq), '', 1000 + seq % 5000, 'EUR', seq % 100, 'active', '{}', 1, NOW(3), NOW(3)
    FROM seq_0_to_${sql.raw(String(PRODUCTS - 1))}`.execute(db);
    const fillMs = performance.now() - fillStart;
    const { rows } = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM products`.execute(db);
    if (Number(rows[0]!.n) !== PRODUCTS) throw new Error(`the fill left ${rows[0]!.n} products, not ${PRODUCTS}`);

    const target = (n: number) => {
      const seq = (((n * 7919) % HOT) * PRODUCTS) / HOT; // every 500th product, visited in a scattered order
      return { merchantId: ids[Math.floor(seq / perMerchant)]!, sku: `SKU-${String(seq).padStart(7, "0")}` };
    };
    let updates = 0;
    const sqlUpdate = async (n: number) => {
      const { merchantId, sku } = target(n);
      const title = `Renamed ${updates++}`;
      await inTransaction(db, async (trx) => {
        const locked = await sql<{
          version: number;
        }>`SELECT * FROM products WHERE merchant_id = ${merchantId} AND sku = ${sku} FOR UPDATE`.execute(trx);
        const version = Number(locked.rows[0]!.version);
        await deferWrite(
          trx,
          trx
            .updateTable("products")
            .set({ title, price_minor: 1000 + (n % 5000), version: version + 1, updated_at: new Date() })
            .where("merchant_id", "=", merchantId)
            .where("sku", "=", sku)
            .where("version", "=", version)
            .compile(),
        );
      });
    };

    await load(100, sqlUpdate); // warm-up: connections and the hot pages
    const before = await load(calls, sqlUpdate);

    const innodbBefore = await innodbState(db);
    const migrationProcess = await startMigrationProcess(url, sets);
    migrate = migrationProcess;
    let migrationStart = 0;
    let migrationEnd = 0;
    let started!: () => void;
    const start = new Promise<void>((resolve) => {
      started = resolve;
    });
    const migration = start.then(async () => {
      migrationStart = performance.now();
      const result = await migrationProcess.go();
      migrationEnd = performance.now();
      return result;
    });
    // The migration starts once a tenth of the calls are done; the load goes on until both the calls and the migration are.
    const during = await load(calls, sqlUpdate, { until: migration, onCall: (done) => done === calls / 10 && started() });
    const { applied, ms: migrationMs, alters } = await migration;
    const innodbAfter = await innodbState(db);
    const after = await load(calls, sqlUpdate);

    const overlapping = during.filter((s) => s.startMs + s.ms >= migrationStart && s.startMs <= migrationEnd);
    // The calls in flight while an ALTER TABLE ran (waiting for, or holding up, its metadata lock).
    const epoch = (ms: number) => performance.timeOrigin + ms;
    const underAlter = during.filter((s) => alters.some(([from, to]) => epoch(s.startMs + s.ms) >= from && epoch(s.startMs) <= to));
    const copied = innodbAfter.tableId !== innodbBefore.tableId;
    const algorithm = copied
      ? "COPY (table id changed)"
      : innodbAfter.instantColumns > innodbBefore.instantColumns
        ? "INSTANT"
        : "in place";

    // The new release on the migrated table: the real UpdateProduct over gRPC.
    const api = await startTestApi<CatalogTables>(name, (apiDb) => [catalogModule(apiDb)], { databaseUrl: url });
    let rpc: Sample[];
    let oldProduct: ExpandMigrationRun["oldProduct"];
    try {
      rpc = await load(calls, async (n) => {
        const { merchantId, sku } = target(n);
        const merchant = merchants.find((m) => m.merchantId === merchantId)!;
        await api.client(CatalogService, merchant).updateProduct({
          product: { sku, title: `Via RPC ${n}`, price: { currencyCode: "EUR", minorUnits: BigInt(2000 + n) } },
          updateMask: { paths: ["title", "price"] },
        });
      });
      const { product } = await api.client(CatalogService, merchants[0]!).getProduct({ sku: target(0).sku });
      oldProduct = {
        brand: product!.brand,
        gtin: product!.gtin,
        weightGrams: product!.weightGrams,
        compareAtPrice: product!.compareAtPrice,
      };
    } finally {
      await api.close();
    }

    const figures = {
      fillMs: Math.round(fillMs),
      migrationMs: round(migrationMs),
      alterStatementsMs: alters.map(([from, to]) => round(to - from)),
      p99BeforeMs: round(p99(before)),
      p99DuringMs: round(p99(during)),
      p99AfterMs: round(p99(after)),
      callsDuring: during.length,
      callsOverlappingMigration: overlapping.length,
      maxOverlappingMs: round(Math.max(0, ...overlapping.map((s) => s.ms))),
      callsUnderAlter: underAlter.length,
      maxUnderAlterMs: round(Math.max(0, ...underAlter.map((s) => s.ms))),
      p99DuringNotUnderAlterMs: round(p99(during.filter((s) => !underAlter.includes(s)))),
      rpcP99AfterMs: round(p99(rpc)),
    };
    return { applied, algorithm, oldProduct, figures };
  } finally {
    migrate?.kill();
    await db.destroy();
    await migrator.destroy();
    await dropTestDatabase(url);
  }
}
