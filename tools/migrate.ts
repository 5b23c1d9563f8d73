/**
 * `npm run migrate`: creates the database if needed and applies every pending
 * migration. `npm run migrate -- --search` does the same for the search
 * projection's own database (SEARCH_DATABASE_URL) instead.
 */
import { parseApiConfig } from "@stockroom/common";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { bulkMigrations } from "@stockroom/bulk";
import { catalogMigrations } from "@stockroom/catalog";
import { notifyMigrations } from "@stockroom/notify";
import { eventsMigrations } from "@stockroom/events";
import { orderMigrations } from "@stockroom/orders";
import { parseSearchConfig, searchMigrations } from "@stockroom/search";
import { stopOnOutage } from "./outage.ts";

const search = process.argv.includes("--search");
const databaseUrl = search ? parseSearchConfig(process.env).databaseUrl : parseApiConfig(process.env).databaseUrl;
const db = createDatabase({ url: databaseUrl, poolSize: 1 });
try {
  await ensureDatabase(databaseUrl);
  const sets = search
    ? [searchMigrations]
    : [commonMigrations, eventsMigrations, catalogMigrations, notifyMigrations, bulkMigrations, orderMigrations];
  const applied = await migrateToLatest(db, sets);
  console.log(applied.length > 0 ? `applied:\n  ${applied.join("\n  ")}` : "already up to date");
} catch (error) {
  stopOnOutage("migrate", error, search ? "SEARCH_DATABASE_URL" : "DATABASE_URL");
} finally {
  await db.destroy();
}
