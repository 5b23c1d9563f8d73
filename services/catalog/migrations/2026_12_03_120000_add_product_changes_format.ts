import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// Compact audit entries (issue 13): before_state and after_state of a format 2
// row hold only the changed fields, not two whole products. Rows written
// before stay format 1 (the default, added instantly, no backfill) and read
// and verify as they always did; the hash chain covers the format.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "product_changes", ["ADD COLUMN format TINYINT NOT NULL DEFAULT 1"]);
}
