import { sql, type Kysely } from "kysely";

// One row per merchant: the last sealed position of its audit chain. Sealers
// lock it (FOR UPDATE SKIP LOCKED), so each merchant's chain grows in one place.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE audit_chain_heads (
      merchant_id VARCHAR(26) NOT NULL,
      seal_seq BIGINT NOT NULL,
      head_hash BINARY(32) NOT NULL,
      sealed_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
