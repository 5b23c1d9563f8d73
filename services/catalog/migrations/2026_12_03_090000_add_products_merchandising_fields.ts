import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// Expand step of "Adding a product field" (README): nullable columns with no
// default to compute, which MariaDB and MySQL 8 add instantly (a metadata
// change, no table copy, writes go on) however many products there are.
// NULL means "not set": old rows need no backfill, and a writer that does not
// know these columns (the previous release during the roll) leaves them alone.
// The service checks the values (GTIN check digit, lengths, ranges); a CHECK
// constraint would make MariaDB validate every row by copying the table.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "products", [
    "ADD COLUMN gtin VARCHAR(14) NULL",
    "ADD COLUMN brand VARCHAR(200) NULL",
    "ADD COLUMN compare_at_minor BIGINT NULL",
    "ADD COLUMN weight_grams INT NULL",
  ]);
}
