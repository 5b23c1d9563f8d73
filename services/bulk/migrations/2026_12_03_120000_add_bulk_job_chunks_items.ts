import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// Chunk format 3 (domain.ts): a chunk's staged items travel in its ledger row
// (items, deflated JSON) instead of a bulk_job_items row per line, and the
// product versions its applied items reached are kept beside them
// (applied_versions); bulk_job_items then holds only the lines that did not
// apply. Chunks of formats 1 and 2 leave both NULL. Nullable columns without
// a default are added instantly.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "bulk_job_chunks", ["ADD COLUMN items MEDIUMBLOB NULL", "ADD COLUMN applied_versions JSON NULL"]);
}
