import { sql, type Kysely } from "kysely";

// Events written in the same transaction as the change they describe; the
// relay publishes rows with published_at NULL, in event_id order per aggregate.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE outbox_events (
      merchant_id VARCHAR(26) NOT NULL,
      event_id VARCHAR(26) NOT NULL,
      aggregate_type VARCHAR(32) NOT NULL,
      aggregate_id VARCHAR(26) NOT NULL,
      aggregate_version BIGINT NOT NULL,
      event_type VARCHAR(64) NOT NULL,
      payload MEDIUMBLOB NOT NULL,
      trace_context VARCHAR(512) NULL,
      created_at DATETIME(3) NOT NULL,
      published_at DATETIME(3) NULL,
      PRIMARY KEY (merchant_id, event_id),
      KEY idx_outbox_unpublished (published_at, event_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
