/**
 * Retention. Three kinds of rows only matter for a while:
 * - idempotency keys (AIP-155 promises at least 24 h; kept 48 h by default),
 * - resumable uploads past their expiry, with their stored parts,
 * - the per-item details of jobs that ended long ago (the chunk ledger with
 *   its staged lines, and the outcome rows: the bulk of a job's footprint).
 *   The job row and its counters stay; its item listing then answers that
 *   the details have expired.
 * Deletes go in small batches so no statement holds locks for long, and each
 * upload's and job's rows are deleted by merchant-leading key. Finding what
 * expired is a maintenance scan over all merchants: it runs against each
 * shard target in turn (forEachShard), like the reconciler.
 */
import { forEachShard } from "@stockroom/common/db";
import { pruneIdempotencyKeys } from "@stockroom/common/rpc";
import { deleteChunks } from "./chunks.ts";
import { deleteItems } from "./items.ts";
import { jobsDueForPruning, markItemsPruned } from "./jobs.ts";
import type { BulkDb } from "./store.ts";
import { pruneExpiredUploads } from "./uploads.ts";

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
  const perShard = await forEachShard(db, (shardDb) => pruneShard(shardDb, retention, now));
  const result: PruneResult = { idempotencyKeys: 0, uploads: 0, jobs: 0, jobItems: 0 };
  for (const r of perShard) for (const k of Object.keys(result) as (keyof PruneResult)[]) result[k] += r[k];
  return result;
}

/** pruneShard prunes one shard target: the rows it finds belong to merchants on it, so every statement runs there. */
async function pruneShard(db: BulkDb, retention: Retention, now: Date): Promise<PruneResult> {
  const result: PruneResult = { idempotencyKeys: 0, uploads: 0, jobs: 0, jobItems: 0 };
  result.idempotencyKeys = await pruneIdempotencyKeys(db, new Date(now.getTime() - retention.idempotencyKeysMs), retention.batch);
  result.uploads = await pruneExpiredUploads(db, now, 100);
  for (const j of await jobsDueForPruning(db, new Date(now.getTime() - retention.jobItemsMs), 20)) {
    const ref = { merchantId: j.merchant_id, jobId: j.job_id };
    // Mark first: from here on, readers say the details expired instead of showing a half-deleted list.
    await markItemsPruned(db, ref, now);
    result.jobItems += await deleteItems(db, ref, retention.batch);
    await deleteChunks(db, ref, retention.batch);
    result.jobs++;
  }
  return result;
}
