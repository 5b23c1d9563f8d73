/**
 * `npm run reindex [-- <merchant id> …]`: rebuilds the search projection from
 * the catalog for the named merchants, or for every merchant, while the
 * services keep running (services/search/src/reindex.ts explains why that is
 * safe). Listing every merchant reads the merchants table across shards: an
 * operator's tool, not a request path.
 *
 * REINDEX_PAGE_SIZE (500) products are read and reconciled at a time.
 *
 * A database that goes away under it (a restart, a failover) does not end
 * it with a stack trace: the merchant under way is taken up again after its
 * last page done (reindexMerchant's resume), after a pause doubling from 1 s
 * to 10 s, for up to REINDEX_RETRY_MS (120 000) of outage in a row; past
 * that, or on any other error, it says which merchants are done and exits 1.
 */
import { parseApiConfig, readInt, taskFailures, unavailableBackend } from "@stockroom/common";
import { createDatabase } from "@stockroom/common/db";
import type { Logger } from "@stockroom/common/observe";
import type { CatalogTables } from "@stockroom/catalog";
import { parseSearchConfig, reindexMerchant, openSearchDatabase, type ReindexProgress } from "@stockroom/search";

/** operatorLog prints a task's outage lines for the operator: the outage on stderr, its end on stdout. */
const operatorLog: Logger = {
  info: (msg) => console.log(`reindex: ${msg}`),
  warn: (msg, fields) => console.error(`reindex: ${msg} (${(fields?.["error"] as Error | undefined)?.message})`),
  error: () => {},
};

const retryForMs = readInt(process.env, "REINDEX_RETRY_MS", 120_000, 0, 86_400_000);
const pageSize = readInt(process.env, "REINDEX_PAGE_SIZE", 500, 1, 10_000);
const catalogDb = createDatabase<CatalogTables>({ url: parseApiConfig(process.env).databaseUrl, poolSize: 2 });
const searchDb = await openSearchDatabase({ url: parseSearchConfig(process.env).databaseUrl, poolSize: 2, migrate: false });
const done: string[] = [];
try {
  const named = process.argv.slice(2);
  const merchants =
    named.length > 0
      ? named
      : await throughOutages("listing merchants", async () =>
          (await catalogDb.selectFrom("merchants").select("merchant_id").orderBy("merchant_id").execute()).map((m) => m.merchant_id),
        );
  const totals = { read: 0, updated: 0, removed: 0 };
  for (const merchantId of merchants) {
    let progress: ReindexProgress | undefined;
    const last = await throughOutages(`merchant ${merchantId}`, async () => {
      const after = progress?.resume.after;
      if (after !== undefined) console.log(`reindex: ${merchantId}: taking up after SKU ${JSON.stringify(after)}`);
      for await (const p of reindexMerchant({ catalogDb, searchDb, pageSize }, merchantId, progress)) progress = p;
      return progress!;
    });
    console.log(`${merchantId}: ${last.read} products read, ${last.updated} updated, ${last.removed} removed`);
    done.push(merchantId);
    totals.read += last.read;
    totals.updated += last.updated;
    totals.removed += last.removed;
  }
  console.log(`${merchants.length} merchants: ${totals.read} products read, ${totals.updated} updated, ${totals.removed} removed`);
} catch (error) {
  const backend = unavailableBackend(error);
  const reason = backend ? `the ${backend} is unavailable` : "it failed";
  console.error(
    `reindex: stopped, ${reason}: ${error instanceof Error ? error.message : String(error)}\n` +
      `  ${done.length} merchant(s) done${done.length > 0 ? ` (the last: ${done.at(-1)})` : ""}; run it again (for the rest: npm run reindex -- <merchant id> …).`,
  );
  process.exitCode = 1;
} finally {
  await catalogDb.destroy();
  await searchDb.destroy();
}

/** throughOutages runs step again while the database is away, for up to retryForMs of outage in a row. */
async function throughOutages<T>(what: string, step: () => Promise<T>): Promise<T> {
  const failures = taskFailures(operatorLog, `reindex (${what})`);
  let since: number | undefined;
  for (;;) {
    try {
      const result = await step();
      failures.succeeded();
      return result;
    } catch (error) {
      since ??= Date.now();
      if (!unavailableBackend(error) || Date.now() - since >= retryForMs) throw error;
      failures.failed(error);
      await new Promise((r) => setTimeout(r, failures.delayMs(1_000)));
    }
  }
}
