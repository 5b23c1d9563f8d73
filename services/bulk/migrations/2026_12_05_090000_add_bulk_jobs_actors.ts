import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// Who started the job and who asked for its rollback, as the audit trail
// names callers ("api_key:<key id>"): the actor of every product change the
// job (or its rollback) makes, whose source then says which job. Expand-only,
// two nullable columns (a metadata change); NULL for jobs created before,
// whose changes keep the actor "bulk_job:<id>".
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "bulk_jobs", ["ADD COLUMN created_by VARCHAR(100) NULL", "ADD COLUMN rollback_by VARCHAR(100) NULL"]);
}
