import { sql, type Kysely } from "kysely";

// The grams of a product's text in the scripts written without spaces (domain.ts runGrams), one row per
// (merchant, SKU) at the same (product_id, version) as its search_products
// row and written with it, only for products whose text has such letters.
// InnoDB's default full-text parser splits words at blanks only and keeps
// none under 3 letters, so Chinese and Japanese text (no blanks) and short
// Korean words could not be searched; MariaDB has no ngram parser, so the
// grams are made here and stored as 3-letter words ("_抹茶", "__茶").
//
// A table of its own: search_products' FULLTEXT index cannot take another
// column online (see the facets table). Grams compare byte for byte
// (utf8mb4_bin); MEDIUMTEXT, as a product's text can hold more than
// 64 KiB of grams (a 10,000-letter description gives up to 20,000).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE search_product_grams (
      merchant_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      version BIGINT NOT NULL,
      grams MEDIUMTEXT NOT NULL,
      PRIMARY KEY (merchant_id, sku),
      FULLTEXT KEY ft_search_product_grams (grams)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
