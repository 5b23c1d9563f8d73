/**
 * The migration to search_documents (2026_12_06_040000) on a database a
 * release before it left: search_products rows, live and deleted, of two
 * merchants, more than a page of them. After it, the same products are
 * found by the same text, each merchant's only, tombstones by none, and a
 * row keeps its state and its applied_at (the reindex's clock).
 */
import test from "ava";
import { sql } from "kysely";
import { createDatabase, ensureDatabase, insertRows, migrateToLatest } from "@stockroom/common/db";
import { dropTestDatabase, testDatabaseUrl } from "@stockroom/common/testing";
import { merchantTag, searchTerms } from "../src/domain.ts";
import { searchMigrations, searchProducts, upsertEntries, type SearchDb } from "../src/store.ts";

const url = testDatabaseUrl("search_documents_migration");
let db: SearchDb;

test.before(async () => {
  await ensureDatabase(url);
  db = createDatabase({ url, poolSize: 2 });
});

test.after.always(async () => {
  await db?.destroy();
  await dropTestDatabase(url);
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
  const row = (merchant_id: string, sku: string, product_id: string, fields: Record<string, unknown>) => ({
    merchant_id,
    sku,
    product_id,
    version: 1,
    deleted: 0,
    title: "",
    description: "",
    attributes_text: "",
    price_minor: 900,
    currency: "EUR",
    stock: 2,
    status: "active",
    changed_at: new Date(),
    applied_at: "2026-12-01 10:00:00.123456",
    ...fields,
  });
  const rows = Array.from({ length: 2_400 }, (_, i) =>
    row(A, `SKU-${String(i + 1).padStart(5, "0")}`, "01KPPPPPPPPPPPPPPPPPPPPPPP", {
      version: 3,
      title: `Teapot ${i + 1}`,
      description: "Cast iron, 0.8 L",
      attributes_text: "black",
      price_minor: 1001 + i,
      stock: 5,
    }),
  );
  rows.push(
    row(A, "CAFE-1", "01KPPPPPPPPPPPPPPPPPPPPPPQ", { title: "Crème brûlée dish", description: "Fait à la main", attributes_text: "blanc" }),
    row(A, "JP-1", "01KPPPPPPPPPPPPPPPPPPPPPPR", { title: "日本製の抹茶セット", currency: "JPY" }),
    row(A, "GONE-1", "01KPPPPPPPPPPPPPPPPPPPPPPS", { version: 4, deleted: 1, title: "Teapot gone", stock: 0 }),
    row(B, "B-1", "01KPPPPPPPPPPPPPPPPPPPPPPT", { title: "Teapot of B" }),
  );
  // Plain statements, so that the file runs through vtgate too (no sequence tables there), each of one merchant (one shard).
  for (const merchant of [A, B]) {
    const own = rows.filter((r) => r.merchant_id === merchant);
    for (let i = 0; i < own.length; i += 500) await insertRows(db, "search_products", own.slice(i, i + 500));
  }

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

  // The projector's batches mix merchants (A and B are on different shards on the Vitess tier): each merchant's rows go in their own transaction.
  const entry = (merchant_id: string, sku: string, title: string) => ({
    merchant_id,
    sku,
    product_id: "01KPPPPPPPPPPPPPPPPPPPPPPZ",
    version: 1,
    deleted: 0,
    title,
    description: "",
    attributes_text: "",
    price_minor: 500,
    currency: "EUR",
    stock: 1,
    status: "active" as const,
    changed_at: new Date(),
    brand: "Acme",
  });
  await upsertEntries(db, [entry(A, "MIX-A", "Mixed kettle"), entry(B, "MIX-B", "Mixed kettle")]);
  t.deepEqual(await find(A, "kettle"), ["MIX-A"]);
  t.deepEqual(await find(B, "kettle"), ["MIX-B"]);
});
