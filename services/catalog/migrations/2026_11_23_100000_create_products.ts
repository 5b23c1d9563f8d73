import { sql, type Kysely } from "kysely";

// Keyed by (merchant_id, sku): merchant_id is the Vitess primary vindex.
// The CHECKs are a last line of defence behind the service's own rules.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE products (
      merchant_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      title VARCHAR(500) NOT NULL,
      description TEXT NOT NULL,
      price_minor BIGINT NOT NULL,
      currency CHAR(3) NOT NULL,
      stock INT NOT NULL,
      status VARCHAR(16) NOT NULL,
      attributes JSON NOT NULL,
      version BIGINT NOT NULL,
      created_at DATETIME(3) NOT NULL,
      updated_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, sku),
      UNIQUE KEY uq_products_id (merchant_id, product_id),
      KEY idx_products_updated (merchant_id, updated_at, sku),
      KEY idx_products_status (merchant_id, status, sku),
      CONSTRAINT chk_products_stock CHECK (stock >= 0),
      CONSTRAINT chk_products_price CHECK (price_minor >= 0)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
