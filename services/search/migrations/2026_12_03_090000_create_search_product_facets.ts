import { sql, type Kysely } from "kysely";

// The filter columns of the projection that are not full-text (issue 17:
// brand), one row per (merchant, SKU) beside its search_products row and
// written with it, under the same (product_id, version) guard.
//
// Why not a column of search_products: its FULLTEXT index gives it a hidden
// FTS_DOC_ID column, and on such a table MariaDB 10.11 refuses ADD COLUMN as
// INSTANT and can only rebuild it (INPLACE with LOCK=SHARED: "Fulltext index
// creation requires a lock"), which blocks the projector for the whole copy,
// so alterTableOnline rightly refuses it. This table has no FULLTEXT index:
// later filter columns are INSTANT here, and their indexes NOCOPY.
//
// brand compares ignoring case (utf8mb4_unicode_ci); idx_search_product_facets_brand
// serves "this merchant's products of this brand, in SKU order, after a SKU".
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE search_product_facets (
      merchant_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      version BIGINT NOT NULL,
      brand VARCHAR(200) COLLATE utf8mb4_unicode_ci NULL,
      PRIMARY KEY (merchant_id, sku),
      KEY idx_search_product_facets_brand (merchant_id, brand, sku)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
