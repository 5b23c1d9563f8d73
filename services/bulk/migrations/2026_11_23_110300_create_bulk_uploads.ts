import { sql, type Kysely } from "kysely";

// Resumable uploads (CreateUpload / AppendUploadPart / CompleteUpload).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE bulk_uploads (
      merchant_id VARCHAR(26) NOT NULL,
      upload_id VARCHAR(26) NOT NULL,
      options JSON NOT NULL,
      expected_size BIGINT NULL,
      committed_size BIGINT NOT NULL,
      job_id VARCHAR(26) NULL,
      created_at DATETIME(3) NOT NULL,
      expires_at DATETIME(3) NOT NULL,
      PRIMARY KEY (merchant_id, upload_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
