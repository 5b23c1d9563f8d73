/**
 * The migration to search_documents (2026_12_06_040000) on a database a
 * release before it left: search_products rows, live and deleted, of two
 * merchants, more than a page of them. After it, the same products are
 * found by the same text, each merchant's only, tombstones by none, and a
 * row keeps its state and its applied_at (the reindex's clock).
 */
import test from "ava";
import { sql } from "kysely";
import { createDatabase, dropDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { testDatabaseUrl } from "@stockroom/common/testing";
import { merchantTag, searchTerms } from "../src/domain.ts";
import { searchMigrations, searchProducts, type SearchDb } from "../src/store.ts";

const url = testDatabaseUrl("search_documents_migration");
let db: SearchDb;

test.before(async () => {
  await ensureDatabase(url);
  db = createDatabase({ url, poolSize: 2 });
});

test.after.always(async () => {
  await db?.destroy();
  await dropDatabase(url);
});

const A = "01KAAAAAAAAAAAAAAAAAAAAAAA";
const B = "01KBBBBBBBBBBBBBBBBBBBBBBB";

/** find runs a text search of the merchant's live products, as SearchProducts does, and returns the SKUs. */
async function find(merchantId: string, text: string, limit = 100): Promise<string[]> {
  const hits = await searchProducts(db, merchantId, { match: searchTerms(text, merchantTag(merchantId)), inStockOnly: false, limit });
  return hits.map((h) => h.sku);
}

test("search_products rows are copied with their terms: the same text finds them, per merchant", async (t) => {
  await migrateToLatest(db, [{ ...searchMigrations, only: (name) => name < "2026_12_06_040000" }]);
  // 2,400 rows of A (over two pages of the copy) and one of B; what a release before this one wrote.
  await sql`INSERT INTO search_products (merchant_id, sku, product_id, version, deleted, title, description, attributes_text,
      price_minor, currency, stock, status, changed_at, applied_at)
    SELECT ${A}, CONCAT('SKU-', LPAD(seq, 5, '0')), '01KPPPPPPPPPPPPPPPPPPPPPPP', 3, 0, CONCAT('Teapot ', seq), 'Cast iron, 0.8 L',
      'black', 1000 + seq, 'EUR', 5, 'active', NOW(3), '2026-12-01 10:00:00.123456' FROM seq_1_to_2400`.execute(db);
  await sql`INSERT INTO search_products VALUES
    (${A}, 'CAFE-1', '01KPPPPPPPPPPPPPPPPPPPPPPQ', 1, 0, 'Crème brûlée dish', 'Fait à la main', 'blanc', 900, 'EUR', 2, 'active', NOW(3), NOW(6)),
    (${A}, 'JP-1', '01KPPPPPPPPPPPPPPPPPPPPPPR', 1, 0, '日本製の抹茶セット', '', '', 900, 'JPY', 2, 'active', NOW(3), NOW(6)),
    (${A}, 'GONE-1', '01KPPPPPPPPPPPPPPPPPPPPPPS', 4, 1, 'Teapot gone', '', '', 900, 'EUR', 0, 'active', NOW(3), NOW(6)),
    (${B}, 'B-1', '01KPPPPPPPPPPPPPPPPPPPPPPT', 1, 0, 'Teapot of B', '', '', 900, 'EUR', 2, 'active', NOW(3), NOW(6))`.execute(db);

  await migrateToLatest(db, [searchMigrations]);

  const count = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM search_documents`.execute(db);
  t.is(Number(count.rows[0]!.n), 2_404, "every row, tombstones too");
  t.deepEqual(await find(A, "teapot", 3), ["SKU-00001", "SKU-00002", "SKU-00003"]);
  t.deepEqual(await find(A, "teapot 2400"), ["SKU-02400"]);
  t.deepEqual(await find(A, "iron"), (await find(A, "teapot")).slice(0, 100), "the description's words");
  t.deepEqual(await find(A, "BLACK", 2), ["SKU-00001", "SKU-00002"], "attribute values, in any case");
  t.deepEqual(await find(A, "creme brulee"), ["CAFE-1"], "ignoring accents");
  t.deepEqual(await find(A, "抹茶"), ["JP-1"], "grams");
  t.deepEqual(await find(A, "gone"), [], "a tombstone is found by nothing");
  t.deepEqual(await find(B, "teapot"), ["B-1"], "B finds its own only");
  t.deepEqual(await find(B, "抹茶"), []);
  const kept = await db
    .selectFrom("search_documents")
    .select(["product_id", "version", sql<string>`CAST(applied_at AS CHAR)`.as("applied_at")])
    .where("merchant_id", "=", A)
    .where("sku", "=", "SKU-00001")
    .executeTakeFirstOrThrow();
  t.deepEqual(
    { ...kept, version: Number(kept.version) },
    { product_id: "01KPPPPPPPPPPPPPPPPPPPPPPP", version: 3, applied_at: "2026-12-01 10:00:00.123456" },
  );
});
