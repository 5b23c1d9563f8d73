import { sql, type Kysely } from "kysely";

// Who started the job and who asked for its rollback, as the audit trail
// names callers ("api_key:<key id>"): the actor of every product change the
// job (or its rollback) makes, whose source then says which job. Expand-only;
// NULL for jobs created before, whose changes keep the actor "bulk_job:<id>".
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE bulk_jobs ADD COLUMN created_by VARCHAR(100) NULL, ADD COLUMN rollback_by VARCHAR(100) NULL`.execute(db);
}
