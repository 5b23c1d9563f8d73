import { sql, type Kysely } from "kysely";
import { insertRows } from "@stockroom/common/db";
import { byMerchant, withTerms } from "../src/store.ts";

// The search projection's rows from 2026-12-06 on: one per (merchant, SKU),
// as search_products, with the product's full text as words and grams each
// behind the merchant's tag (domain.ts documentTerms) instead of the text
// itself under one FULLTEXT index for all merchants. A query reads the
// postings of its merchant's words only; before, a merchant with 3
// products searching "light" read every merchant's "light*" (50–60 ms
// beside another merchant's 200,000 products, and more as the database
// grew). Words compare ignoring case and accents (utf8mb4_unicode_ci), grams
// byte for byte (utf8mb4_bin), each column with its own FULLTEXT index,
// which replaces search_product_grams. Only what a hit shows or a filter
// reads is kept besides (no description). terms_format is the version of
// the rules the terms were made by (domain.ts TERMS_FORMAT): a table with a
// FULLTEXT index takes no column without a locked rebuild, so it is there
// from the start, for the reindex to find rows made by older rules.
//
// The rows are copied from search_products, their terms made here, so
// search finds every product from the first query after the migration;
// search_products and search_product_grams are left as they are for a
// process of the release before this one (it reads and writes them until
// it is replaced; `npm run reindex` after the roll brings in what those
// processes projected meanwhile) and are dropped by a later release.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE search_documents (
      merchant_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      version BIGINT NOT NULL,
      deleted BOOLEAN NOT NULL,
      title VARCHAR(500) NOT NULL,
      price_minor BIGINT NOT NULL,
      currency CHAR(3) NOT NULL,
      stock INT NOT NULL,
      status VARCHAR(16) NOT NULL,
      changed_at DATETIME(3) NOT NULL,
      applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
      words MEDIUMTEXT COLLATE utf8mb4_unicode_ci NOT NULL,
      grams MEDIUMTEXT COLLATE utf8mb4_bin NOT NULL,
      terms_format TINYINT UNSIGNED NOT NULL,
      PRIMARY KEY (merchant_id, sku),
      FULLTEXT KEY ft_search_documents_words (words),
      FULLTEXT KEY ft_search_documents_grams (grams)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
  await copySearchProducts(db);
}

const PAGE = 1_000;

/** copySearchProducts copies search_products into search_documents in key order, a page at a time, each row with its terms. */
async function copySearchProducts(db: Kysely<any>): Promise<void> {
  let after: { merchant_id: string; sku: string } | undefined;
  for (;;) {
    let q = db
      .selectFrom("search_products")
      .select([
        "merchant_id",
        "sku",
        "product_id",
        "version",
        "deleted",
        "title",
        "description",
        "attributes_text",
        "price_minor",
        "currency",
        "stock",
        "status",
        "changed_at",
        // As text: a Date would drop its microseconds, which the reindex's clock compares.
        sql<string>`CAST(applied_at AS CHAR)`.as("applied_at"),
      ])
      .orderBy("merchant_id")
      .orderBy("sku")
      .limit(PAGE);
    if (after) {
      const { merchant_id, sku } = after;
      q = q.where((eb) => eb.or([eb("merchant_id", ">", merchant_id), eb.and([eb("merchant_id", "=", merchant_id), eb("sku", ">", sku)])]));
    }
    const rows = await q.execute();
    if (rows.length === 0) return;
    // A statement per merchant (store.ts byMerchant).
    for (const own of byMerchant(rows.map(withTerms)).values()) await insertRows(db, "search_documents", own);
    after = rows.at(-1);
  }
}
