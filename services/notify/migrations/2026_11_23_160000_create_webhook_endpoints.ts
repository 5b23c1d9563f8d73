import { sql, type Kysely } from "kysely";

// A merchant's webhook endpoints. The signing secret is kept (not hashed):
// the dispatcher needs it to sign. previous_secret signs alongside it for a
// while after a rotation. consecutive_failures and paused_until are the
// endpoint's circuit breaker, shared by every dispatcher process.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE webhook_endpoints (
      merchant_id VARCHAR(26) NOT NULL,
      endpoint_id VARCHAR(26) NOT NULL,
      url VARCHAR(2048) NOT NULL,
      description VARCHAR(500) NOT NULL,
      event_types JSON NOT NULL,
      secret VARCHAR(100) NOT NULL,
      previous_secret VARCHAR(100) NULL,
      previous_secret_expires_at DATETIME(3) NULL,
      consecutive_failures INT NOT NULL,
      paused_until DATETIME(3) NULL,
      version BIGINT NOT NULL,
      created_at DATETIME(3) NOT NULL,
      updated_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, endpoint_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
