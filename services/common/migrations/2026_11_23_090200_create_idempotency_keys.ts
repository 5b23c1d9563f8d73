import { sql, type Kysely } from "kysely";

// AIP-155 request ids: the first response of each (merchant, request_id).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE idempotency_keys (
      merchant_id VARCHAR(26) NOT NULL,
      request_id VARCHAR(128) NOT NULL,
      method VARCHAR(100) NOT NULL,
      request_sha256 BINARY(32) NOT NULL,
      response MEDIUMBLOB NULL,
      created_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, request_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
