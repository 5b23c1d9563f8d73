import { sql, type Kysely } from "kysely";

// One row per job. request_id and content_sha256 make uploads idempotent
// (AIP-155, and same merchant + same content within the retention window).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE bulk_jobs (
      merchant_id VARCHAR(26) NOT NULL,
      job_id VARCHAR(26) NOT NULL,
      request_id VARCHAR(128) NULL,
      content_sha256 CHAR(64) NULL,
      format VARCHAR(16) NOT NULL,
      conflict_policy VARCHAR(16) NOT NULL,
      dry_run BOOLEAN NOT NULL,
      file_name VARCHAR(255) NOT NULL,
      file_size BIGINT NOT NULL,
      state VARCHAR(24) NOT NULL,
      total_items BIGINT NOT NULL,
      valid_items BIGINT NOT NULL,
      invalid_items BIGINT NOT NULL,
      applied_items BIGINT NOT NULL,
      unchanged_items BIGINT NOT NULL,
      conflict_items BIGINT NOT NULL,
      failed_items BIGINT NOT NULL,
      rolled_back_items BIGINT NOT NULL,
      chunk_count INT NOT NULL,
      chunks_done INT NOT NULL,
      error VARCHAR(1000) NOT NULL,
      version BIGINT NOT NULL,
      created_at DATETIME(3) NOT NULL,
      updated_at DATETIME(3) NOT NULL,
      ended_at DATETIME(3) NULL,
      PRIMARY KEY (merchant_id, job_id),
      UNIQUE KEY uq_bulk_jobs_request (merchant_id, request_id),
      KEY idx_bulk_jobs_content (merchant_id, content_sha256, created_at),
      KEY idx_bulk_jobs_state (merchant_id, state, job_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
