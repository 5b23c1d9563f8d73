import { sql, type Kysely } from "kysely";

// The search projection: one row per (merchant, SKU), in the search database.
// (product_id, version) orders a SKU's states (a recreated SKU gets a newer
// ULID); a delete keeps its row as a tombstone (deleted = 1) so an older event
// arriving late cannot bring the product back. applied_at is set by the
// database whenever a row changes, on one clock, for the reindex.
// Text columns are case-insensitive for FULLTEXT; keys stay binary like the
// catalog's.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE search_products (
      merchant_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      version BIGINT NOT NULL,
      deleted BOOLEAN NOT NULL,
      title VARCHAR(500) COLLATE utf8mb4_unicode_ci NOT NULL,
      description TEXT COLLATE utf8mb4_unicode_ci NOT NULL,
      attributes_text TEXT COLLATE utf8mb4_unicode_ci NOT NULL,
      price_minor BIGINT NOT NULL,
      currency CHAR(3) NOT NULL,
      stock INT NOT NULL,
      status VARCHAR(16) NOT NULL,
      changed_at DATETIME(3) NOT NULL,
      applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
      PRIMARY KEY (merchant_id, sku),
      FULLTEXT KEY ft_search_products (title, description, attributes_text)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
