import { sql, type Kysely } from "kysely";

// The pruner deletes keys past their retention by age (expand-only change).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE idempotency_keys ADD KEY idx_idempotency_keys_created (created_at)`.execute(db);
}
