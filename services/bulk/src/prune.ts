/**
 * Retention. Three kinds of rows only matter for a while:
 * - idempotency keys (AIP-155 promises at least 24 h; kept 48 h by default),
 * - resumable uploads past their expiry, with their stored parts,
 * - the per-item details of jobs that ended long ago (staging rows and
 *   outcomes, the bulk of a job's footprint: about 500 bytes per item). The
 *   job row and its counters stay; its item listing then answers that the
 *   details have expired.
 * Deletes go in small batches so no statement holds locks for long, and each
 * upload's and job's rows are deleted by merchant-leading key. Finding what
 * expired is a maintenance scan over all merchants: on Vitess it runs against
 * each shard, like the reconciler.
 */
import { jobsDueForPruning, markItemsPruned } from "./jobs.ts";
import type { BulkDb } from "./store.ts";

export interface Retention {
  idempotencyKeysMs: number;
  jobItemsMs: number;
  /** Rows per DELETE statement. */
  batch: number;
}

export const DEFAULT_RETENTION: Retention = {
  idempotencyKeysMs: 48 * 3600_000,
  jobItemsMs: 30 * 24 * 3600_000,
  batch: 5000,
};

export interface PruneResult {
  idempotencyKeys: number;
  uploads: number;
  jobs: number;
  jobItems: number;
}

/** prune removes what outlived its retention; a run does a bounded amount of work and the next run continues. */
export async function prune(db: BulkDb, retention: Retention, now = new Date()): Promise<PruneResult> {
  const result: PruneResult = { idempotencyKeys: 0, uploads: 0, jobs: 0, jobItems: 0 };
  const keysBefore = new Date(now.getTime() - retention.idempotencyKeysMs);
  result.idempotencyKeys = await deleteInBatches(
    () => db.deleteFrom("idempotency_keys").where("created_at", "<", keysBefore).limit(retention.batch).executeTakeFirst(),
    retention.batch,
  );

  const uploads = await db
    .selectFrom("bulk_uploads")
    .select(["merchant_id", "upload_id"])
    .where("expires_at", "<", now)
    .limit(100)
    .execute();
  for (const u of uploads) {
    await deleteInBatches(
      () =>
        db
          .deleteFrom("bulk_upload_parts")
          .where("merchant_id", "=", u.merchant_id)
          .where("upload_id", "=", u.upload_id)
          .limit(100)
          .executeTakeFirst(),
      100,
    );
    await db.deleteFrom("bulk_uploads").where("merchant_id", "=", u.merchant_id).where("upload_id", "=", u.upload_id).execute();
    result.uploads++;
  }

  const jobs = await jobsDueForPruning(db, new Date(now.getTime() - retention.jobItemsMs), 20);
  for (const j of jobs) {
    // Mark first: from here on, readers say the details expired instead of showing a half-deleted list.
    await markItemsPruned(db, { merchantId: j.merchant_id, jobId: j.job_id }, now);
    for (const table of ["bulk_job_items", "bulk_job_chunks"] as const) {
      const deleted = await deleteInBatches(
        () =>
          db
            .deleteFrom(table)
            .where("merchant_id", "=", j.merchant_id)
            .where("job_id", "=", j.job_id)
            .limit(retention.batch)
            .executeTakeFirst(),
        retention.batch,
      );
      if (table === "bulk_job_items") result.jobItems += deleted;
    }
    result.jobs++;
  }
  return result;
}

/** deleteInBatches repeats a DELETE … LIMIT batch until it deletes fewer than batch rows. */
async function deleteInBatches(run: () => Promise<{ numDeletedRows: bigint }>, batch: number): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = Number((await run()).numDeletedRows);
    total += deleted;
    if (deleted < batch) return total;
  }
}
