import { sql, type Kysely } from "kysely";

// Staging: every line of a job with its validation outcome, the fields it
// names (payload), and the product version when staged (for the conflict
// policy). Enough to resume, report and roll back a job from MySQL alone.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE bulk_job_items (
      merchant_id VARCHAR(26) NOT NULL,
      job_id VARCHAR(26) NOT NULL,
      line_no BIGINT NOT NULL,
      sku VARCHAR(128) NOT NULL,
      chunk_no INT NULL,
      payload JSON NULL,
      staged_version BIGINT NULL,
      outcome VARCHAR(16) NOT NULL,
      errors JSON NULL,
      product_version BIGINT NULL,
      PRIMARY KEY (merchant_id, job_id, line_no),
      KEY idx_bulk_job_items_outcome (merchant_id, job_id, outcome, line_no)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
