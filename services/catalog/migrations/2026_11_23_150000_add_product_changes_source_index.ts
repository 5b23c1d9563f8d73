import { sql, type Kysely } from "kysely";

// ListChanges filters a merchant's audit trail by source (a bulk job, its
// rollback, an order) newest first; bulk rollback reads a job's rows the same way.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    ALTER TABLE product_changes
      ADD KEY idx_product_changes_source (merchant_id, source_kind, source_ref, change_id)`.execute(db);
}
