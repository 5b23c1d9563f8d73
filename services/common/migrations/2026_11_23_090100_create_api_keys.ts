import { sql, type Kysely } from "kysely";

// The key itself is never stored: only the SHA-256 of its random secret.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE api_keys (
      merchant_id VARCHAR(26) NOT NULL,
      key_id VARCHAR(26) NOT NULL,
      secret_sha256 BINARY(32) NOT NULL,
      label VARCHAR(200) NOT NULL,
      created_at DATETIME(3) NOT NULL,
      revoked_at DATETIME(3) NULL,
      PRIMARY KEY (merchant_id, key_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
