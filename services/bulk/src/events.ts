import type { Expression, ExpressionBuilder, SqlBool } from "kysely";
import { appendJobFinishedEvent } from "@stockroom/catalog/notify/job-events.ts";
import type { BulkTx } from "./apply.ts";
import { jobToProto } from "./convert.ts";
import type { BulkJobRow, BulkTables } from "./store.ts";

/**
 * endJob moves a job to a final state (with the other columns of `set`),
 * but only if `only` holds for its row, and then writes its
 * bulk_job.finished event in the same transaction. It tells whether the job
 * ended here: false means another path got there first.
 */
export async function endJob(
  trx: BulkTx,
  ref: { merchantId: string; jobId: string },
  set: { state: BulkJobRow["state"]; error?: string; file_size?: number },
  now: Date,
  only?: (eb: ExpressionBuilder<BulkTables, "bulk_jobs">) => Expression<SqlBool>,
): Promise<boolean> {
  let update = trx
    .updateTable("bulk_jobs")
    .set((eb) => ({ ...set, ended_at: now, updated_at: now, version: eb("version", "+", 1) }))
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId);
  if (only) update = update.where(only);
  const ended = await update.executeTakeFirst();
  if (ended.numUpdatedRows !== 1n) return false;
  await recordJobFinished(trx, ref, now);
  return true;
}

/**
 * recordJobFinished writes the "bulk_job.finished" event of a job that has
 * just reached a final state (succeeded, partially succeeded, failed,
 * cancelled, rolled back), in the transaction that moved it there, so the
 * relay publishes it exactly when the state commits and merchants' webhooks
 * hear of it.
 */
export async function recordJobFinished(trx: BulkTx, ref: { merchantId: string; jobId: string }, now: Date): Promise<void> {
  const row = await trx
    .selectFrom("bulk_jobs")
    .selectAll()
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .executeTakeFirstOrThrow();
  await appendJobFinishedEvent(trx, ref.merchantId, jobToProto(row), now);
}
