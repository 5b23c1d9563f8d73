/** `npm run migrate`: creates the database if needed and applies every pending migration. */
import { parseApiConfig } from "@stockroom/common/config.ts";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db.ts";
import { bulkMigrations } from "@stockroom/bulk/store.ts";
import { catalogMigrations } from "@stockroom/catalog/store.ts";

const { databaseUrl } = parseApiConfig(process.env);
await ensureDatabase(databaseUrl);
const db = createDatabase({ url: databaseUrl, poolSize: 1 });
try {
  const applied = await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations]);
  console.log(applied.length > 0 ? `applied:\n  ${applied.join("\n  ")}` : "already up to date");
} finally {
  await db.destroy();
}
