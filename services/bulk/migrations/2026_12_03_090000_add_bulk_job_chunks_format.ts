import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// The staged format of a chunk's items (README, "Adding a product field"):
// a worker applies only formats it knows. Chunks staged before this column
// existed are format 1, which is what the default says; adding a column with
// a constant default is instant.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "bulk_job_chunks", ["ADD COLUMN format TINYINT UNSIGNED NOT NULL DEFAULT 1"]);
}
