import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// When the process staging a job last said it still was (every few seconds
// while it reads and stages the file): a job left RECEIVING or VALIDATING by
// a process that stopped (a restart, a lost database connection) is failed
// by the workers' reconciler once this is old, instead of staying there for
// good. Expand-only: a nullable column (a metadata change), then an index
// for the reconciler's sweep, built in place. NULL for jobs staged before.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "bulk_jobs", ["ADD COLUMN staging_heartbeat_at DATETIME(3) NULL"]);
  await alterTableOnline(db, "bulk_jobs", ["ADD INDEX idx_bulk_jobs_staging (state, staging_heartbeat_at)"]);
}
