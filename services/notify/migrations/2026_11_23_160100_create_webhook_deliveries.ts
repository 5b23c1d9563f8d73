import { sql, type Kysely } from "kysely";

// One row per (endpoint, event): the unique key makes a redelivered event a
// no-op. state is pending, delivered or dead. For a pending row
// next_attempt_at is when it is due (a claimed row's lease: it becomes due
// again if its sender dies); for the others, when it got there.
// idx_webhook_deliveries_due serves the per-endpoint claim and, as a loose
// index scan, the "which endpoints have due rows" query (one probe per
// endpoint however long its backlog). idx_webhook_deliveries_state lists
// dead letters newest first.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE webhook_deliveries (
      merchant_id VARCHAR(26) NOT NULL,
      delivery_id VARCHAR(26) NOT NULL,
      endpoint_id VARCHAR(26) NOT NULL,
      event_id VARCHAR(64) NOT NULL,
      event_type VARCHAR(64) NOT NULL,
      payload MEDIUMTEXT NOT NULL,
      state VARCHAR(16) NOT NULL,
      attempts INT NOT NULL,
      next_attempt_at DATETIME(3) NOT NULL,
      expires_at DATETIME(3) NOT NULL,
      last_attempt_at DATETIME(3) NULL,
      last_status INT NOT NULL,
      last_error VARCHAR(500) NOT NULL,
      created_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, delivery_id),
      UNIQUE KEY uq_webhook_deliveries_event (merchant_id, endpoint_id, event_id),
      KEY idx_webhook_deliveries_due (merchant_id, endpoint_id, state, next_attempt_at),
      KEY idx_webhook_deliveries_state (merchant_id, state, delivery_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
