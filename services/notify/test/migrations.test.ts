/**
 * The webhook tables moved from the catalog's migration set to notify's. A
 * database migrated before the move (kysely_migration_catalog records the
 * two webhook migrations) must migrate with the new sets without running
 * them again and without losing a row; a fresh one gets them from notify.
 */
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { sql, type Kysely } from "kysely";
import { catalogMigrations } from "@stockroom/catalog";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest, type MigrationSet } from "@stockroom/common/db";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { notifyMigrations } from "../src/store.ts";

const migrationFiles = (set: MigrationSet) =>
  readdirSync(set.folder)
    .filter((f) => f.endsWith(".ts"))
    .sort();
/** Kysely records a migration by its file name without the extension. */
const names = (files: string[]) => files.map((f) => f.slice(0, -".ts".length));

/**
 * oldCatalogSet is the catalog's set as it was before the move: a folder
 * holding the catalog's migrations and the two webhook ones, under the set
 * name "catalog". The files are symlinks to the real ones (so their imports
 * resolve from the repository).
 */
function oldCatalogSet(t: ExecutionContext): MigrationSet {
  const dir = mkdtempSync(path.join(tmpdir(), "stockroom-old-catalog-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const set of [catalogMigrations, notifyMigrations]) {
    for (const file of migrationFiles(set)) symlinkSync(path.join(set.folder, file), path.join(dir, file));
  }
  return { name: "catalog", folder: dir };
}

async function recorded(db: Kysely<any>, set: string): Promise<string[]> {
  const rows = await sql<{ name: string }>`SELECT name FROM ${sql.table(`kysely_migration_${set}`)} ORDER BY name`.execute(db);
  return rows.rows.map((r) => r.name);
}

async function freshDatabase(t: ExecutionContext, name: string): Promise<Kysely<any>> {
  const url = testDatabaseUrl(name);
  await ensureDatabase(url);
  const db = createDatabase<any>({ url, poolSize: 2 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  return db;
}

test("notify adopts exactly its own migration files, by the names Kysely records", (t) => {
  t.deepEqual(notifyMigrations.adopts, [{ set: "catalog", migrations: names(migrationFiles(notifyMigrations)) }]);
  t.deepEqual(names(migrationFiles(notifyMigrations)), [
    "2026_11_23_160000_create_webhook_endpoints",
    "2026_11_23_160100_create_webhook_deliveries",
  ]);
  t.false(
    migrationFiles(catalogMigrations).some((f) => f.includes("webhook")),
    "the catalog's set no longer holds webhook migrations",
  );
});

test("a database migrated before the move hands the webhook migrations over to notify, runs nothing twice and keeps its rows", async (t) => {
  const db = await freshDatabase(t, "notify_handover");
  const before = oldCatalogSet(t);
  const catalogNames = names(migrationFiles(catalogMigrations));
  const webhookNames = names(migrationFiles(notifyMigrations));

  // Before the move: the catalog's set created the webhook tables.
  const applied = await migrateToLatest(db, [commonMigrations, before]);
  t.deepEqual(
    applied.filter((a) => a.startsWith("catalog/")),
    [...catalogNames, ...webhookNames].sort().map((n) => `catalog/${n}`),
  );
  t.deepEqual(await recorded(db, "catalog"), [...catalogNames, ...webhookNames].sort());
  const merchant = newUlid();
  const endpoint = newUlid();
  const delivery = newUlid();
  const now = new Date();
  await sql`INSERT INTO webhook_endpoints (merchant_id, endpoint_id, url, description, event_types, secret, previous_secret,
      previous_secret_expires_at, consecutive_failures, paused_until, version, created_at, updated_at)
    VALUES (${merchant}, ${endpoint}, 'https://example.com/hook', 'kept', '["product.*"]', 'whsec_x', NULL, NULL, 0, NULL, 1, ${now}, ${now})`.execute(
    db,
  );
  await sql`INSERT INTO webhook_deliveries (merchant_id, delivery_id, endpoint_id, event_id, event_type, payload, state, attempts,
      next_attempt_at, expires_at, last_attempt_at, last_status, last_error, created_at)
    VALUES (${merchant}, ${delivery}, ${endpoint}, 'ev-1', 'product.updated', '{}', 'pending', 0, ${now}, ${now}, NULL, 0, '', ${now})`.execute(
    db,
  );

  // After the move, in the order the catalog API lists them (and with notify first, as another process might).
  t.deepEqual(await migrateToLatest(db, [commonMigrations, catalogMigrations, notifyMigrations]), [], "nothing runs again");
  t.deepEqual(await recorded(db, "catalog"), catalogNames);
  t.deepEqual(await recorded(db, "notify"), webhookNames);
  t.deepEqual(await migrateToLatest(db, [commonMigrations, notifyMigrations, catalogMigrations]), [], "a second start finds nothing to do");
  t.deepEqual(await recorded(db, "catalog"), catalogNames);
  t.deepEqual(await recorded(db, "notify"), webhookNames);

  const endpoints = await sql<{
    endpoint_id: string;
    description: string;
  }>`SELECT endpoint_id, description FROM webhook_endpoints WHERE merchant_id = ${merchant}`.execute(db);
  t.deepEqual(endpoints.rows, [{ endpoint_id: endpoint, description: "kept" }]);
  const deliveries = await sql<{
    delivery_id: string;
    state: string;
  }>`SELECT delivery_id, state FROM webhook_deliveries WHERE merchant_id = ${merchant}`.execute(db);
  t.deepEqual(deliveries.rows, [{ delivery_id: delivery, state: "pending" }]);
});

test("on a fresh database the notify set creates the webhook tables itself", async (t) => {
  const db = await freshDatabase(t, "notify_fresh");
  const applied = await migrateToLatest(db, [commonMigrations, catalogMigrations, notifyMigrations]);
  t.deepEqual(
    applied.filter((a) => !a.startsWith("common/")),
    [
      ...names(migrationFiles(catalogMigrations)).map((n) => `catalog/${n}`),
      ...names(migrationFiles(notifyMigrations)).map((n) => `notify/${n}`),
    ],
  );
  const tables = await sql<{ name: string }>`SELECT table_name AS name FROM information_schema.tables
    WHERE table_schema = DATABASE() AND table_name LIKE 'webhook%' ORDER BY table_name`.execute(db);
  t.deepEqual(
    tables.rows.map((r) => r.name),
    ["webhook_deliveries", "webhook_endpoints"],
  );
});
