/**
 * Rolling a job back. RollbackBulkJob moves the job to ROLLING_BACK and
 * re-queues its applied chunks as rollback work on the same ledger and
 * queue, so a rollback is durable, resumable and spread over the workers
 * like the job itself. A worker reverts one chunk in ONE transaction: each
 * APPLIED item's product gets back, from the job's own audit entry, the
 * values of the fields the job changed (a product the job created is
 * deleted), with audit and outbox rows of source ROLLBACK. A product changed
 * since the job applied it follows the rollback's conflict policy: SKIP
 * (default) keeps the newer edit and reports CONFLICT; OVERWRITE restores.
 */
import {
  applyMask,
  lockProducts,
  NO_MERCHANDISING,
  writeProducts,
  type MaskPath,
  type Product,
  type ProductWrite,
} from "@stockroom/catalog";
import { inTransaction, jsonColumn } from "@stockroom/common/db";
import { PreconditionError } from "@stockroom/common";
import { failRollbackOf, lockChunk, queueForRollback, setChunkState } from "./chunks.ts";
import { canMove, type ChunkRef, type ConflictPolicy, type JobRef } from "./domain.ts";
import { appliedLines, compact, writeOutcomes, type ItemOutcomeRow } from "./items.ts";
import { chunksAllDone, countChunk, findJob, jobActor, moveJob } from "./jobs.ts";
import type { BulkDb, BulkJobRow } from "./store.ts";

/** startRollback queues a finished job's applied chunks for reverting, asked for by `by` (Principal.actor); a repeat is a no-op. */
export async function startRollback(
  db: BulkDb,
  job: BulkJobRow,
  policy: ConflictPolicy,
  by: string | undefined = undefined,
  now = new Date(),
): Promise<void> {
  if (job.state === "rolling_back" || job.state === "rolled_back") return;
  if (job.items_pruned_at) {
    throw new PreconditionError(
      "ITEMS_EXPIRED",
      "the job's per-item details have passed their retention period: it can no longer be rolled back",
      { state: job.state },
    );
  }
  if (!canMove(job.state, "rolling_back") || job.dry_run) {
    throw new PreconditionError(
      "JOB_NOT_ROLLBACKABLE",
      job.dry_run ? "a dry run changed nothing to roll back" : `a ${job.state} job cannot be rolled back until it ends`,
      { state: job.state },
    );
  }
  const ref = { merchantId: job.merchant_id, jobId: job.job_id };
  await inTransaction(db, async (trx) => {
    // Locked, the job cannot move on between the check and the move.
    const locked = await findJob(trx, ref.merchantId, ref.jobId, true);
    if (!locked || !canMove(locked.state, "rolling_back")) return;
    // Chunks that never applied have nothing to revert: they count as done.
    const idle = await queueForRollback(trx, ref);
    await moveJob(trx, ref, "rolling_back", now, { rollback_policy: policy, rollback_by: by ?? null, chunks_done: idle });
  });
  await finishRollbackIfDone(db, ref, now);
}

/** rollbackChunk reverts one chunk exactly once; see the module comment. */
export async function rollbackChunk(
  db: BulkDb,
  ref: ChunkRef,
  now = new Date(),
): Promise<{ noop: boolean; rolledBack: number; conflict: number }> {
  const done = await inTransaction(db, async (trx) => {
    const chunk = await lockChunk(trx, ref);
    if (chunk?.state !== "rollback_queued") return { noop: true, rolledBack: 0, conflict: 0 };
    const job = (await findJob(trx, ref.merchantId, ref.jobId))!;
    const items = await appliedLines(trx, ref, chunk);
    const skus = items.map((i) => i.sku);
    const audit = new Map(
      (skus.length === 0
        ? []
        : await trx
            .selectFrom("product_changes")
            .select(["sku", "before_state", "changed_fields"])
            .where("merchant_id", "=", ref.merchantId)
            .where("sku", "in", skus)
            .where("source_kind", "=", "bulk_job")
            .where("source_ref", "=", ref.jobId)
            .execute()
      ).map((a) => [a.sku, a]),
    );
    const current = await lockProducts(trx, ref.merchantId, skus);
    const writes: ProductWrite[] = [];
    const outcomes: ItemOutcomeRow[] = [];
    for (const item of items) {
      const cur = current.get(item.sku);
      const entry = audit.get(item.sku);
      const changedSince = !cur || cur.version !== item.product_version;
      if (!cur || !entry || (changedSince && job.rollback_policy !== "overwrite")) {
        outcomes.push({
          line_no: item.line_no,
          sku: item.sku,
          outcome: "conflict",
          errors: [
            { field: "", code: "CHANGED_SINCE_APPLIED", message: "the product changed after the job applied it; kept the newer state" },
          ],
          product_version: item.product_version,
        });
        continue;
      }
      const before = entry.before_state === null ? undefined : revive(jsonColumn<Product>(entry.before_state));
      if (!before) {
        // The job created it: rolling back removes it.
        writes.push({ kind: "delete", before: cur });
      } else {
        const { next, changed } = applyMask(cur, before, jsonColumn<MaskPath[]>(entry.changed_fields));
        if (changed.length > 0) writes.push({ kind: "update", before: cur, fields: next, changedFields: changed });
      }
      outcomes.push({ line_no: item.line_no, sku: item.sku, outcome: "rolled_back", errors: null, product_version: item.product_version });
    }
    await writeProducts(
      trx,
      // The changes are those of whoever asked for the rollback; their source names the job.
      { merchantId: ref.merchantId, actor: jobActor(job, "rollback"), sourceKind: "rollback", sourceRef: ref.jobId },
      writes,
      now,
    );
    // A format-3 chunk's rolled-back lines read as such from the chunk's state (items.ts): only conflicts get rows.
    await writeOutcomes(trx, ref, compact(chunk) ? outcomes.filter((o) => o.outcome !== "rolled_back") : outcomes);
    const rolledBack = outcomes.filter((o) => o.outcome === "rolled_back").length;
    const conflict = outcomes.length - rolledBack;
    await setChunkState(trx, ref, "rolled_back", now);
    await countChunk(trx, ref, { rolledBack, applied: -(rolledBack + conflict), conflict }, now);
    return { noop: false, rolledBack, conflict };
  });
  if (!done.noop) await finishRollbackIfDone(db, ref, now);
  return done;
}

/** failRollbackChunk gives up reverting a poison chunk: its items stay as they are, and the rollback ends. */
export async function failRollbackChunk(db: BulkDb, ref: ChunkRef, reason: string, now = new Date()): Promise<void> {
  const failed = await inTransaction(db, async (trx) => {
    if (!(await failRollbackOf(trx, ref, reason))) return false;
    await countChunk(trx, ref, {}, now, `rollback of chunk ${ref.chunkNo} failed: ${reason}`.slice(0, 1000));
    return true;
  });
  if (failed) await finishRollbackIfDone(db, ref, now);
}

/** finishRollbackIfDone moves a rolling-back job whose chunks are all reverted to ROLLED_BACK. */
async function finishRollbackIfDone(db: BulkDb, ref: JobRef, now: Date): Promise<void> {
  await inTransaction(db, (trx) => moveJob(trx, ref, "rolled_back", now, {}, chunksAllDone));
}

/** revive turns an audit snapshot's date strings back into Dates; snapshots from before the 2026-12 fields have none of them. */
function revive(p: Product): Product {
  return { ...NO_MERCHANDISING, ...p, createdAt: new Date(p.createdAt), updatedAt: new Date(p.updatedAt) };
}
