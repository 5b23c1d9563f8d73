/**
 * Item outcomes in bulk_job_items: what chunk transactions record for each
 * staged line (staging itself writes the rows, stage.ts), and their removal.
 */
import { deleteInBatches, insertRows } from "@stockroom/common/db";
import type { ChunkRef, ItemOutcome, JobRef } from "./domain.ts";
import type { ItemError } from "./parse/types.ts";
import type { BulkDb, BulkTx } from "./store.ts";

/** ItemOutcomeRow is the outcome a chunk transaction records for one line. */
export interface ItemOutcomeRow {
  line_no: number;
  sku: string;
  outcome: ItemOutcome;
  errors: ItemError[] | null;
  product_version: number | null;
}

/** writeOutcomes records many items' outcomes with one statement (the staged rows exist; this updates them). */
export async function writeOutcomes(trx: BulkTx, ref: ChunkRef, outcomes: ItemOutcomeRow[]): Promise<void> {
  if (outcomes.length === 0) return;
  await insertRows(
    trx,
    "bulk_job_items",
    outcomes.map((o) => ({
      merchant_id: ref.merchantId,
      job_id: ref.jobId,
      line_no: o.line_no,
      sku: o.sku,
      outcome: o.outcome,
      errors: o.errors === null ? null : JSON.stringify(o.errors),
      product_version: o.product_version,
    })),
    { onDuplicateKeyUpdate: ["outcome", "errors", "product_version"] },
  );
}

/** chunkItems reads a chunk's items (lines first_line..last_line) that have the given outcome, in line order. */
export function chunkItems(trx: BulkTx, ref: ChunkRef, lines: { first_line: number; last_line: number }, outcome: ItemOutcome) {
  return trx
    .selectFrom("bulk_job_items")
    .select(["line_no", "sku", "payload", "staged_version", "product_version"])
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("line_no", ">=", lines.first_line)
    .where("line_no", "<=", lines.last_line)
    .where("outcome", "=", outcome)
    .orderBy("line_no")
    .execute();
}

/** failPendingItems marks a chunk's pending items FAILED with one reason, and returns how many there were. */
export async function failPendingItems(
  trx: BulkTx,
  ref: ChunkRef,
  lines: { first_line: number; last_line: number },
  reason: string,
): Promise<number> {
  const errors = JSON.stringify([{ field: "", code: "CHUNK_FAILED", message: reason.slice(0, 500) }]);
  const result = await trx
    .updateTable("bulk_job_items")
    .set({ outcome: "failed", errors })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("line_no", ">=", lines.first_line)
    .where("line_no", "<=", lines.last_line)
    .where("outcome", "=", "pending")
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** deleteItems removes a job's staged lines and outcomes (retention, or a discarded duplicate upload), batch rows per statement. */
export function deleteItems(db: BulkDb, ref: JobRef, batch: number): Promise<number> {
  return deleteInBatches(
    () =>
      db
        .deleteFrom("bulk_job_items")
        .where("merchant_id", "=", ref.merchantId)
        .where("job_id", "=", ref.jobId)
        .limit(batch)
        .executeTakeFirst(),
    batch,
  );
}
