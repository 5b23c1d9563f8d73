import { sql, type Kysely } from "kysely";

// One row per order, keyed by (merchant_id, order_id): merchant_id is the
// Vitess primary vindex, order_id a ULID (newest first = order_id DESC).
// payment_id is unique per merchant (NULL until paid; NULLs never collide), so
// one provider payment can never pay two orders. idx_orders_expiry serves the
// reservation sweeper, the one cross-merchant scan (per shard on Vitess).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE orders (
      merchant_id VARCHAR(26) NOT NULL,
      order_id VARCHAR(26) NOT NULL,
      state VARCHAR(16) NOT NULL,
      buyer_reference VARCHAR(128) NOT NULL,
      currency CHAR(3) NOT NULL,
      total_minor BIGINT NOT NULL,
      payment_id VARCHAR(128) NULL,
      cancel_reason VARCHAR(500) NOT NULL,
      version BIGINT NOT NULL,
      created_at DATETIME(3) NOT NULL,
      updated_at DATETIME(3) NOT NULL,
      expire_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, order_id),
      UNIQUE KEY uq_orders_payment (merchant_id, payment_id),
      KEY idx_orders_state (merchant_id, state, order_id),
      KEY idx_orders_expiry (state, expire_at),
      CONSTRAINT chk_orders_total CHECK (total_minor >= 0)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
