/**
 * `npm run reindex [-- <merchant id> …]`: rebuilds the search projection from
 * the catalog for the named merchants, or for every merchant, while the
 * services keep running (services/search/src/reindex.ts explains why that is
 * safe). Listing every merchant reads the merchants table across shards: an
 * operator's tool, not a request path.
 */
import { parseApiConfig } from "@stockroom/common";
import { createDatabase } from "@stockroom/common/db";
import type { CatalogTables } from "@stockroom/catalog";
import { parseSearchConfig, reindexMerchant, openSearchDatabase } from "@stockroom/search";

const catalogDb = createDatabase<CatalogTables>({ url: parseApiConfig(process.env).databaseUrl, poolSize: 2 });
const searchDb = await openSearchDatabase({ url: parseSearchConfig(process.env).databaseUrl, poolSize: 2, migrate: false });
try {
  const named = process.argv.slice(2);
  const merchants =
    named.length > 0
      ? named
      : (await catalogDb.selectFrom("merchants").select("merchant_id").orderBy("merchant_id").execute()).map((m) => m.merchant_id);
  const totals = { read: 0, updated: 0, removed: 0 };
  for (const merchantId of merchants) {
    let last = { read: 0, updated: 0, removed: 0 };
    for await (const progress of reindexMerchant({ catalogDb, searchDb }, merchantId)) last = progress;
    console.log(`${merchantId}: ${last.read} products read, ${last.updated} updated, ${last.removed} removed`);
    totals.read += last.read;
    totals.updated += last.updated;
    totals.removed += last.removed;
  }
  console.log(`${merchants.length} merchants: ${totals.read} products read, ${totals.updated} updated, ${totals.removed} removed`);
} finally {
  await catalogDb.destroy();
  await searchDb.destroy();
}
