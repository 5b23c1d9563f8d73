import { sql, type Kysely } from "kysely";

// The audit trail: one row per committed product change, before and after.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE product_changes (
      merchant_id VARCHAR(26) NOT NULL,
      change_id VARCHAR(26) NOT NULL,
      product_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      change_type VARCHAR(16) NOT NULL,
      version BIGINT NOT NULL,
      changed_fields JSON NOT NULL,
      before_state JSON NULL,
      after_state JSON NULL,
      actor VARCHAR(100) NOT NULL,
      source_kind VARCHAR(16) NOT NULL,
      source_ref VARCHAR(26) NOT NULL,
      request_id VARCHAR(128) NOT NULL,
      reason VARCHAR(500) NOT NULL,
      created_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, change_id),
      KEY idx_product_changes_sku (merchant_id, sku, change_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
