import { sql, type Kysely } from "kysely";

// Per-item details of old jobs are pruned after a retention period; the job
// row and its counters stay. ended_at is indexed for the pruner's scan.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE bulk_jobs ADD COLUMN items_pruned_at DATETIME(3) NULL, ADD KEY idx_bulk_jobs_ended (ended_at)`.execute(db);
  await sql`ALTER TABLE bulk_uploads ADD KEY idx_bulk_uploads_expires (expires_at)`.execute(db);
}
