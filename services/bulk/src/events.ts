import { appendJobFinishedEvent } from "@stockroom/catalog/notify/job-events.ts";
import type { BulkTx } from "./apply.ts";
import { jobToProto } from "./convert.ts";

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
