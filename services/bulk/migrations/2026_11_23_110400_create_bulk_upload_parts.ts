import { sql, type Kysely } from "kysely";

// The bytes of a resumable upload, one row per accepted part, keyed by offset.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE bulk_upload_parts (
      merchant_id VARCHAR(26) NOT NULL,
      upload_id VARCHAR(26) NOT NULL,
      byte_offset BIGINT NOT NULL,
      data MEDIUMBLOB NOT NULL,
      PRIMARY KEY (merchant_id, upload_id, byte_offset)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
