import { sql, type Kysely } from "kysely";

// The conflict policy of a rollback, set when one is requested (expand-only change).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE bulk_jobs ADD COLUMN rollback_policy VARCHAR(16) NULL`.execute(db);
}
