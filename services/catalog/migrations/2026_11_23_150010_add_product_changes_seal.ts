import { sql, type Kysely } from "kysely";

// The tamper-evident chain (services/catalog/src/audit.ts): writers leave the
// seal columns NULL; the sealer fills them later. idx_product_changes_unsealed
// leads with seal_seq so the sealer finds unsealed rows (NULLs sort first) with
// one range; uq_product_changes_seal walks a merchant's chain in seal order
// and makes two rows at one chain position impossible.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE product_changes
      ADD COLUMN seal_seq BIGINT NULL,
      ADD COLUMN prev_hash BINARY(32) NULL,
      ADD COLUMN row_hash BINARY(32) NULL,
      ADD KEY idx_product_changes_unsealed (seal_seq, merchant_id),
      ADD UNIQUE KEY uq_product_changes_seal (merchant_id, seal_seq)`.execute(db);
}
