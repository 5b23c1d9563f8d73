import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// Sealing (services/catalog/src/audit.ts) fills each audit row's prev_hash and
// row_hash some 30 s after it was written. A NULL takes no room in an InnoDB
// row, so the row grew by 64 bytes when it was sealed: pages filled by the
// writers' appends then split, and sealing cost MariaDB more CPU and redo
// than writing the row had. New rows are written with both hashes as 32 zero
// bytes (the column default; writers do not name them), so sealing rewrites
// them in the space they already take. Unsealed is still seal_seq IS NULL.
// Only the defaults change: a metadata change, no table copy; rows written
// before keep their NULLs and are sealed as before.
export async function up(db: Kysely<any>): Promise<void> {
  const zeros = `X'${"00".repeat(32)}'`;
  await alterTableOnline(db, "product_changes", [
    `ALTER COLUMN prev_hash SET DEFAULT ${zeros}`,
    `ALTER COLUMN row_hash SET DEFAULT ${zeros}`,
  ]);
}
