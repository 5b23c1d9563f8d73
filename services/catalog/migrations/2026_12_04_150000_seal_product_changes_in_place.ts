import { sql, type Kysely } from "kysely";
import { alterTableOnline, isVitess, waitForVtgateSchema } from "@stockroom/common/db";

// Sealing rewrites each audit row in place (services/catalog/src/audit.ts):
// with its hashes already 32 bytes (2026_12_04_140000), the one column that
// still grew a row when it was sealed was seal_seq, from NULL (no room in an
// InnoDB row) to a number. Unsealed is now seal_seq = 0, the column's
// default, so the row has its sealed size from the start.
//
// Many unsealed rows of a merchant share 0, so the chain-position index can
// no longer be unique; verifyAuditChain reports two rows at one position
// (duplicate_position) instead. The index is rebuilt online (no lock on
// writes). Rows still unsealed as NULL (the last ~30 s of changes, and any
// backlog) become 0; a previous release's sealer running meanwhile only ever
// seals NULL rows, and a row it loses to this update it leaves to the new one.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "product_changes", [
    "DROP KEY uq_product_changes_seal",
    "ADD KEY idx_product_changes_seal (merchant_id, seal_seq)",
  ]);
  await alterTableOnline(db, "product_changes", ["ALTER COLUMN seal_seq SET DEFAULT 0"]);
  // On Vitess, vtgate plans the UPDATEs below with the schema it tracks, which these ALTERs made it reload.
  if (await isVitess(db)) await waitForVtgateSchema(db);
  // A merchant at a time: on Vitess each UPDATE then goes to one shard (vtgate refuses one that
  // spans shards). No NULL row appears after the ALTER above: it waited for every transaction
  // that had written the table, and writers do not name seal_seq.
  const { rows } = await sql<{ merchant_id: string }>`SELECT DISTINCT merchant_id FROM product_changes WHERE seal_seq IS NULL`.execute(db);
  for (const { merchant_id } of rows) {
    for (;;) {
      const result = await sql`
        UPDATE product_changes SET seal_seq = 0 WHERE merchant_id = ${merchant_id} AND seal_seq IS NULL LIMIT 5000`.execute(db);
      if (Number(result.numAffectedRows ?? 0n) < 5000) break;
    }
  }
}
