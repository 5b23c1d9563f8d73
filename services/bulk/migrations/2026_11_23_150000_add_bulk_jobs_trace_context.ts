import { sql, type Kysely } from "kysely";

// The W3C trace context of the call that created the job: every chunk
// published later (by a worker's top-up or the reconciler) joins that trace,
// so one job is one trace. Expand-only; NULL when tracing was off.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE bulk_jobs ADD COLUMN trace_context VARCHAR(512) NULL`.execute(db);
}
