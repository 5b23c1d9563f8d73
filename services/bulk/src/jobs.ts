import { ER_DUP_ENTRY, mysqlErrno } from "@stockroom/common/db.ts";
import { serializeTraceContext } from "@stockroom/common/trace-context.ts";
import { newUlid } from "@stockroom/common/ulid.ts";
import type { BulkDb } from "./apply.ts";
import type { BulkJobRow } from "./store.ts";

export interface NewJob {
  merchantId: string;
  requestId: string;
  format: BulkJobRow["format"];
  conflictPolicy: BulkJobRow["conflict_policy"];
  dryRun: boolean;
  fileName: string;
}

/**
 * createJob starts a job in RECEIVING. A request_id already used by this
 * merchant returns that job instead (AIP-155), so a retried upload never
 * makes a second job. The caller's trace context is kept with the job, so
 * every chunk, whoever publishes it and when, joins the upload's trace.
 */
export async function createJob(db: BulkDb, job: NewJob, now = new Date()): Promise<{ jobId: string; existing: boolean }> {
  const jobId = newUlid(now.getTime());
  try {
    await db
      .insertInto("bulk_jobs")
      .values({
        merchant_id: job.merchantId,
        job_id: jobId,
        request_id: job.requestId === "" ? null : job.requestId,
        content_sha256: null,
        format: job.format,
        conflict_policy: job.conflictPolicy,
        rollback_policy: null,
        items_pruned_at: null,
        trace_context: serializeTraceContext(),
        dry_run: job.dryRun,
        file_name: job.fileName,
        file_size: 0,
        state: "receiving",
        total_items: 0,
        valid_items: 0,
        invalid_items: 0,
        applied_items: 0,
        unchanged_items: 0,
        conflict_items: 0,
        failed_items: 0,
        rolled_back_items: 0,
        chunk_count: 0,
        chunks_done: 0,
        error: "",
        version: 1,
        created_at: now,
        updated_at: now,
        ended_at: null,
      })
      .execute();
    return { jobId, existing: false };
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error;
    const row = await db
      .selectFrom("bulk_jobs")
      .select("job_id")
      .where("merchant_id", "=", job.merchantId)
      .where("request_id", "=", job.requestId)
      .executeTakeFirstOrThrow();
    return { jobId: row.job_id, existing: true };
  }
}

/** findJob reads one of the merchant's jobs. */
export async function findJob(db: BulkDb, merchantId: string, jobId: string): Promise<BulkJobRow | undefined> {
  return db.selectFrom("bulk_jobs").selectAll().where("merchant_id", "=", merchantId).where("job_id", "=", jobId).executeTakeFirst();
}
