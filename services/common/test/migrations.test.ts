import { mkdtempSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test from "ava";
import { sql } from "kysely";
import { createDatabase, ensureDatabase, migrateToLatest, type MigrationSet } from "../src/db/database.ts";
import { testDatabaseUrl, dropTestDatabase } from "../testing/index.ts";

/** folder writes migration files that each create one table, and returns their folder. */
function folder(name: string, tables: string[]): string {
  const dir = path.join(mkdtempSync(path.join(tmpdir(), "stockroom-migrations-")), name);
  mkdirSync(dir);
  for (const table of tables) {
    writeFileSync(
      path.join(dir, `${table}.mjs`),
      `export async function up(db) { await db.schema.createTable(${JSON.stringify(table)}).addColumn("id", "varchar(26)", (c) => c.primaryKey()).execute(); }\n`,
    );
  }
  return dir;
}

async function recorded(db: Parameters<typeof migrateToLatest>[0], set: string): Promise<string[]> {
  const rows = await sql<{ name: string }>`SELECT name FROM ${sql.table(`kysely_migration_${set}`)} ORDER BY name`.execute(db);
  return rows.rows.map((r) => r.name);
}

test("a set that adopts another set's applied migrations takes their records over and runs nothing twice", async (t) => {
  const url = testDatabaseUrl("migrations_handover");
  await ensureDatabase(url);
  const db = createDatabase<any>({ url, poolSize: 2 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  // Before: one package owns both tables.
  const before: MigrationSet = { name: "old", folder: folder("old", ["t1_products", "t2_webhooks"]) };
  t.deepEqual(await migrateToLatest(db, [before]), ["old/t1_products", "old/t2_webhooks"]);

  // After: the webhook migration moved to a package of its own.
  const old: MigrationSet = { name: "old", folder: folder("old", ["t1_products"]) };
  const moved: MigrationSet = {
    name: "new",
    folder: folder("new", ["t2_webhooks", "t3_more"]),
    adopts: [{ set: "old", migrations: ["t2_webhooks"] }],
  };
  t.deepEqual(await migrateToLatest(db, [old, moved]), ["new/t3_more"]);
  t.deepEqual(await recorded(db, "old"), ["t1_products"]);
  t.deepEqual(await recorded(db, "new"), ["t2_webhooks", "t3_more"]);
  // A second start (or a racing one) finds nothing left to hand over.
  t.deepEqual(await migrateToLatest(db, [old, moved]), []);
});

test("on a fresh database the adopting set runs the adopted migrations itself", async (t) => {
  const url = testDatabaseUrl("migrations_fresh");
  await ensureDatabase(url);
  const db = createDatabase<any>({ url, poolSize: 2 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  const old: MigrationSet = { name: "old", folder: folder("old", ["t1_products"]) };
  const moved: MigrationSet = {
    name: "new",
    folder: folder("new", ["t2_webhooks"]),
    adopts: [{ set: "old", migrations: ["t2_webhooks"] }],
  };
  t.deepEqual(await migrateToLatest(db, [old, moved]), ["old/t1_products", "new/t2_webhooks"]);
  t.deepEqual(await recorded(db, "new"), ["t2_webhooks"]);
});

test("a set listed more than once runs once, in the place of its first occurrence", async (t) => {
  const url = testDatabaseUrl("migrations_dedupe");
  await ensureDatabase(url);
  let statements: string[] = [];
  const db = createDatabase<any>({ url, poolSize: 2, observe: (text) => statements.push(text) });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  // Two modules of one process both list the shared set.
  const shared: MigrationSet = { name: "shared", folder: folder("shared", ["t1_outbox"]) };
  const a: MigrationSet = { name: "a", folder: folder("a", ["t2_a"]) };
  const b: MigrationSet = { name: "b", folder: folder("b", ["t3_b"]) };
  t.deepEqual(await migrateToLatest(db, [a, shared, b, shared]), ["a/t2_a", "shared/t1_outbox", "b/t3_b"]);
  t.deepEqual(await recorded(db, "shared"), ["t1_outbox"]);
  // Listed twice, its migrator runs once: the same statements as listed once.
  const touching = async (sets: MigrationSet[]) => {
    statements = [];
    t.deepEqual(await migrateToLatest(db, sets), []);
    return statements.filter((s) => s.includes("kysely_migration_shared") || s.includes("kysely_migration_lock_shared")).length;
  };
  const once = await touching([shared]);
  t.true(once > 0);
  t.is(await touching([shared, a, shared, b, shared]), once);
});

test("a set's only narrows which migrations run; a later run without it applies the rest", async (t) => {
  const url = testDatabaseUrl("migrations_only");
  await ensureDatabase(url);
  const db = createDatabase<any>({ url, poolSize: 2 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  const set: MigrationSet = { name: "staged", folder: folder("staged", ["t1_first", "t2_second", "t3_latest"]) };
  t.deepEqual(await migrateToLatest(db, [{ ...set, only: (name) => name !== "t3_latest" }]), ["staged/t1_first", "staged/t2_second"]);
  t.deepEqual(await recorded(db, "staged"), ["t1_first", "t2_second"]);
  t.deepEqual(await migrateToLatest(db, [set]), ["staged/t3_latest"]);
});
