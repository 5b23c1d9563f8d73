/**
 * The outbox table's migration moved from common's set to this package's
 * (eventsMigrations adopts it): a database migrated when common still held
 * it must start cleanly with the new sets, run nothing twice and keep its
 * outbox rows.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { sql } from "kysely";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest, type MigrationSet } from "@stockroom/common/db";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { eventsMigrations } from "../src/migrations.ts";
import type { EventTables } from "../src/schema.ts";

const OUTBOX_MIGRATION = "2026_11_23_090300_create_outbox_events";
const EVENT_COUNT_MIGRATION = "2026_12_03_120000_add_outbox_event_count";

/**
 * oldCommonFolder copies common's migrations and the outbox one into one
 * folder, as common's set was before the move. It lives in this package, not
 * the system's temp folder, so the copies resolve "kysely" as the originals do.
 */
function oldCommonFolder(): string {
  const dir = mkdtempSync(path.join(import.meta.dirname, ".old-common-"));
  const folder = path.join(dir, "migrations");
  mkdirSync(folder);
  for (const file of readdirSync(commonMigrations.folder)) copyFileSync(path.join(commonMigrations.folder, file), path.join(folder, file));
  copyFileSync(path.join(eventsMigrations.folder, `${OUTBOX_MIGRATION}.ts`), path.join(folder, `${OUTBOX_MIGRATION}.ts`));
  return folder;
}

async function recorded(db: Parameters<typeof migrateToLatest>[0], set: string): Promise<string[]> {
  const rows = await sql<{ name: string }>`SELECT name FROM ${sql.table(`kysely_migration_${set}`)} ORDER BY name`.execute(db);
  return rows.rows.map((r) => r.name);
}

test("a database migrated while common held the outbox migration hands it to the events set and keeps its rows", async (t) => {
  const url = testDatabaseUrl("events_handover");
  await ensureDatabase(url);
  const db = createDatabase<EventTables>({ url, poolSize: 2 });
  const folder = oldCommonFolder();
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
    rmSync(path.dirname(folder), { recursive: true, force: true });
  });

  // Before the move: common's set creates outbox_events, and an event waits in it.
  const oldCommon: MigrationSet = { name: "common", folder };
  const before = await migrateToLatest(db, [oldCommon]);
  t.true(before.includes(`common/${OUTBOX_MIGRATION}`), before.join(", "));
  const eventId = newUlid();
  await db
    .insertInto("outbox_events")
    .values({
      merchant_id: newUlid(),
      event_id: eventId,
      aggregate_type: "product",
      aggregate_id: newUlid(),
      aggregate_version: 1,
      event_type: "product.created",
      payload: Buffer.from("x"),
      trace_context: null,
      created_at: new Date(),
    })
    .execute();

  // After: common without it, and the events set, listed twice as two modules of one process would.
  t.deepEqual(
    await migrateToLatest(db, [commonMigrations, eventsMigrations, eventsMigrations]),
    [`events/${EVENT_COUNT_MIGRATION}`],
    "nothing runs again; only the set's later migration runs",
  );
  t.false((await recorded(db, "common")).includes(OUTBOX_MIGRATION), "common no longer records it");
  t.deepEqual(await recorded(db, "events"), [OUTBOX_MIGRATION, EVENT_COUNT_MIGRATION]);
  const rows = await db.selectFrom("outbox_events").select(["event_id", "event_count"]).execute();
  t.deepEqual(rows, [{ event_id: eventId, event_count: 1 }], "the waiting event is still there, one event");
  // A second start finds nothing to do.
  t.deepEqual(await migrateToLatest(db, [commonMigrations, eventsMigrations]), []);
});

test("on a fresh database the events set creates the outbox table itself", async (t) => {
  const url = testDatabaseUrl("events_fresh");
  await ensureDatabase(url);
  const db = createDatabase<EventTables>({ url, poolSize: 2 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  const applied = await migrateToLatest(db, [commonMigrations, eventsMigrations]);
  t.deepEqual(applied.slice(-2), [`events/${OUTBOX_MIGRATION}`, `events/${EVENT_COUNT_MIGRATION}`]);
  t.false(applied.includes(`common/${OUTBOX_MIGRATION}`));
  t.deepEqual(await db.selectFrom("outbox_events").selectAll().execute(), []);
});
