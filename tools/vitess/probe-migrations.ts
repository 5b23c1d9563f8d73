/**
 * probe-migrations runs the migrations `npm start` applies against vtgate
 * (tools/vitess/vttestserver.sh; issue 12) and lists every statement Vitess
 * refuses, with its error. On Vitess the database is the keyspace and cannot
 * be created, so the keyspaces must be empty, as vttestserver.sh starts them:
 *
 *   node tools/vitess/probe-migrations.ts [mysql://root@127.0.0.1:23577]
 *
 * 1. each migration file's up() on its own, in order, going on after a
 *    failure (so one refused DDL does not hide the next);
 * 2. the keyspaces emptied, then migrateToLatest as the services run it
 *    (Kysely's bookkeeping and lock tables, the hand-over of adopted
 *    migrations);
 * 3. migrateToLatest again, twice at once (already up to date; the lock);
 * 4. adopted migrations recorded by their old set again, as in a database
 *    migrated before they moved: migrateToLatest must hand the records over
 *    and run nothing.
 * Exits 1 if anything failed.
 */
import { promises as fs } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { sql, type Kysely } from "kysely";
import { commonMigrations, createDatabase, migrateToLatest, type MigrationSet } from "@stockroom/common/db";
import { bulkMigrations } from "@stockroom/bulk";
import { catalogMigrations } from "@stockroom/catalog";
import { eventsMigrations } from "@stockroom/events";
import { notifyMigrations } from "@stockroom/notify";
import { orderMigrations } from "@stockroom/orders";
import { searchMigrations } from "@stockroom/search";

const base = process.argv[2] ?? "mysql://root@127.0.0.1:23577";
/** The keyspaces and the sets each holds, as tools/migrate.ts (and npm start) apply them. */
const KEYSPACES: { keyspace: string; sets: MigrationSet[] }[] = [
  {
    keyspace: "stockroom",
    sets: [commonMigrations, eventsMigrations, catalogMigrations, notifyMigrations, bulkMigrations, orderMigrations],
  },
  { keyspace: "stockroom_search", sets: [searchMigrations] },
];

interface Failure {
  phase: string;
  where: string;
  statement: string;
  error: string;
}
const failures: Failure[] = [];

/** open connects to a keyspace, remembering the last statement each query ran. */
function open(keyspace: string) {
  const last = { sql: "" };
  // biome-ignore lint/suspicious/noExplicitAny: migrations use Kysely<any>
  const db: Kysely<any> = createDatabase({ url: `${base}/${keyspace}`, poolSize: 2, observe: (text) => (last.sql = text) });
  return { db, last };
}

/** errorText is an error and its causes, one line. */
function errorText(error: unknown): string {
  const parts: string[] = [];
  for (let e = error as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) parts.push(e.message ?? String(e));
  return parts.join(" ← ");
}

function squeeze(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 240 ? `${flat.slice(0, 240)}…` : flat;
}

async function emptyKeyspace(db: Kysely<unknown>): Promise<void> {
  const tables = await sql<Record<string, string>>`SHOW TABLES`.execute(db);
  for (const row of tables.rows) await sql`DROP TABLE ${sql.table(Object.values(row)[0]!)}`.execute(db);
}

for (const { keyspace, sets } of KEYSPACES) {
  const { db, last } = open(keyspace);
  try {
    // 1. Every migration on its own.
    await emptyKeyspace(db);
    for (const set of sets) {
      const files = (await fs.readdir(set.folder)).filter((f) => f.endsWith(".ts")).sort();
      for (const file of files) {
        const { up } = await import(pathToFileURL(path.join(set.folder, file)).href);
        last.sql = "";
        try {
          await up(db);
          console.log(`ok    ${keyspace} ${set.name}/${file}`);
        } catch (error) {
          console.log(`FAIL  ${keyspace} ${set.name}/${file}`);
          failures.push({ phase: "up()", where: `${set.name}/${file}`, statement: squeeze(last.sql), error: errorText(error) });
        }
      }
    }
    // 2. migrateToLatest from empty.
    await emptyKeyspace(db);
    for (const [phase, runs] of [
      ["migrateToLatest (empty keyspace)", 1],
      ["migrateToLatest (up to date, two at once)", 2],
    ] as const) {
      const results = await Promise.allSettled(Array.from({ length: runs }, () => migrateToLatest(db, sets)));
      for (const result of results) {
        if (result.status === "fulfilled") console.log(`ok    ${keyspace} ${phase}: ${result.value.length} applied`);
        else {
          console.log(`FAIL  ${keyspace} ${phase}`);
          failures.push({ phase, where: keyspace, statement: squeeze(last.sql), error: errorText(result.reason) });
        }
      }
    }
    // 4. The hand-over of adopted migrations.
    for (const set of sets) {
      for (const { set: from, migrations } of set.adopts ?? []) {
        const [source, target] = [`kysely_migration_${from}`, `kysely_migration_${set.name}`];
        const where = `${from} → ${set.name}`;
        try {
          for (const name of migrations) {
            await sql`INSERT INTO ${sql.table(source)} (name, timestamp) VALUES (${name}, ${new Date().toISOString()})`.execute(db);
            await sql`DELETE FROM ${sql.table(target)} WHERE name = ${name}`.execute(db);
          }
          const applied = await migrateToLatest(db, sets);
          const recorded = async (table: string) =>
            (await sql`SELECT name FROM ${sql.table(table)} WHERE name IN (${sql.join(migrations)})`.execute(db)).rows.length;
          const [moved, left] = [await recorded(target), await recorded(source)];
          if (applied.length > 0 || moved !== migrations.length || left > 0) {
            throw new Error(`applied [${applied.join(", ")}], ${moved} of ${migrations.length} records moved, ${left} left`);
          }
          console.log(`ok    ${keyspace} hand-over ${where}`);
        } catch (error) {
          console.log(`FAIL  ${keyspace} hand-over ${where}`);
          failures.push({ phase: "hand-over", where, statement: squeeze(last.sql), error: errorText(error) });
        }
      }
    }
  } finally {
    await db.destroy();
  }
}

console.log(`\n${failures.length} failure(s)`);
for (const f of failures) console.log(`\n[${f.phase}] ${f.where}\n  statement: ${f.statement}\n  error:     ${f.error}`);
process.exitCode = failures.length > 0 ? 1 : 0;
