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
import { inTransaction, jsonColumn } from "@stockroom/common/db.ts";
import { PreconditionError } from "@stockroom/common/errors.ts";
import { applyMask, changeTime, type MaskPath, type Product } from "@stockroom/catalog/domain.ts";
import { recordChanges, type ProductChangeRecord } from "@stockroom/catalog/events.ts";
import { deleteProductRow, findProducts, upsertProducts } from "@stockroom/catalog/store.ts";
import { lockChunk, writeOutcomes, type BulkDb, type ChunkRef, type ItemOutcomeRow } from "./apply.ts";
import { endJob } from "./events.ts";
import type { BulkJobRow } from "./store.ts";

/** ROLLBACK_FROM are the job states a rollback may start from. */
const ROLLBACK_FROM: BulkJobRow["state"][] = ["succeeded", "partially_succeeded", "failed", "cancelled"];

/** startRollback queues a finished job's applied chunks for reverting; a repeat is a no-op. */
export async function startRollback(db: BulkDb, job: BulkJobRow, policy: "skip" | "overwrite", now = new Date()): Promise<void> {
  if (job.state === "rolling_back" || job.state === "rolled_back") return;
  if (job.items_pruned_at) {
    throw new PreconditionError("ITEMS_EXPIRED", "the job's per-item details have passed their retention period: it can no longer be rolled back", { state: job.state });
  }
  if (!ROLLBACK_FROM.includes(job.state) || job.dry_run) {
    throw new PreconditionError(
      "JOB_NOT_ROLLBACKABLE",
      job.dry_run ? "a dry run changed nothing to roll back" : `a ${job.state} job cannot be rolled back until it ends`,
      { state: job.state },
    );
  }
  await inTransaction(db, async (trx) => {
    const moved = await trx
      .updateTable("bulk_jobs")
      .set((eb) => ({ state: "rolling_back", rollback_policy: policy, chunks_done: 0, ended_at: null, updated_at: now, version: eb("version", "+", 1) }))
      .where("merchant_id", "=", job.merchant_id)
      .where("job_id", "=", job.job_id)
      .where("state", "in", ROLLBACK_FROM)
      .executeTakeFirst();
    if (moved.numUpdatedRows !== 1n) return;
    await trx
      .updateTable("bulk_job_chunks")
      .set((eb) => ({ state: "rollback_queued", attempt: eb("attempt", "+", 1), published_at: null }))
      .where("merchant_id", "=", job.merchant_id)
      .where("job_id", "=", job.job_id)
      .where("state", "=", "applied")
      .execute();
    // Chunks that never applied have nothing to revert.
    const idle = await trx
      .updateTable("bulk_job_chunks")
      .set({ state: "rolled_back" })
      .where("merchant_id", "=", job.merchant_id)
      .where("job_id", "=", job.job_id)
      .where("state", "in", ["queued", "failed", "cancelled"])
      .executeTakeFirst();
    await trx
      .updateTable("bulk_jobs")
      .set({ chunks_done: Number(idle.numUpdatedRows) })
      .where("merchant_id", "=", job.merchant_id)
      .where("job_id", "=", job.job_id)
      .execute();
  });
  await finishRollbackIfDone(db, { merchantId: job.merchant_id, jobId: job.job_id }, now);
}

/** rollbackChunk reverts one chunk exactly once; see the module comment. */
export async function rollbackChunk(db: BulkDb, ref: ChunkRef, now = new Date()): Promise<{ noop: boolean; rolledBack: number; conflict: number }> {
  const done = await inTransaction(db, async (trx) => {
    const chunk = await lockChunk(trx, ref);
    if (!chunk || chunk.state !== "rollback_queued") return { noop: true, rolledBack: 0, conflict: 0 };
    const job = await trx
      .selectFrom("bulk_jobs")
      .select("rollback_policy")
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .executeTakeFirstOrThrow();
    const items = await trx
      .selectFrom("bulk_job_items")
      .select(["line_no", "sku", "product_version"])
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .where("line_no", ">=", chunk.first_line)
      .where("line_no", "<=", chunk.last_line)
      .where("outcome", "=", "applied")
      .execute();
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
    const current = new Map((await findProducts(trx, ref.merchantId, skus, true)).map((p) => [p.sku, p]));
    const writes: Product[] = [];
    const changes: ProductChangeRecord[] = [];
    const outcomes: ItemOutcomeRow[] = [];
    for (const item of items) {
      const cur = current.get(item.sku);
      const entry = audit.get(item.sku);
      const changedSince = !cur || cur.version !== Number(item.product_version);
      if (!entry || (changedSince && (job.rollback_policy !== "overwrite" || !cur))) {
        outcomes.push({
          line_no: item.line_no,
          sku: item.sku,
          outcome: "conflict",
          errors: [{ field: "", code: "CHANGED_SINCE_APPLIED", message: "the product changed after the job applied it; kept the newer state" }],
          product_version: item.product_version,
        });
        continue;
      }
      const before = entry.before_state === null ? undefined : revive(jsonColumn<Product>(entry.before_state));
      if (!before) {
        // The job created it: rolling back removes it.
        await deleteProductRow(trx, ref.merchantId, cur!.sku, cur!.version);
        const at = changeTime(cur!, now);
        changes.push({ type: "deleted", before: cur, product: { ...cur!, version: cur!.version + 1, updatedAt: at }, changedFields: [], at });
      } else {
        const { next, changed } = applyMask(cur!, before, jsonColumn<MaskPath[]>(entry.changed_fields));
        if (changed.length > 0) {
          next.version = cur!.version + 1;
          next.updatedAt = changeTime(cur!, now);
          writes.push(next);
          changes.push({ type: "updated", before: cur, product: next, changedFields: changed, at: next.updatedAt });
        }
      }
      outcomes.push({ line_no: item.line_no, sku: item.sku, outcome: "rolled_back", errors: null, product_version: item.product_version });
    }
    await upsertProducts(trx, ref.merchantId, writes);
    await recordChanges(trx, { merchantId: ref.merchantId, actor: `bulk_job:${ref.jobId}`, sourceKind: "rollback", sourceRef: ref.jobId }, changes);
    await writeOutcomes(trx, ref, outcomes);
    const rolledBack = outcomes.filter((o) => o.outcome === "rolled_back").length;
    const conflict = outcomes.length - rolledBack;
    await trx
      .updateTable("bulk_job_chunks")
      .set({ state: "rolled_back" })
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .where("chunk_no", "=", ref.chunkNo)
      .execute();
    await trx
      .updateTable("bulk_jobs")
      .set((eb) => ({
        rolled_back_items: eb("rolled_back_items", "+", rolledBack),
        applied_items: eb("applied_items", "-", rolledBack + conflict),
        conflict_items: eb("conflict_items", "+", conflict),
        chunks_done: eb("chunks_done", "+", 1),
        version: eb("version", "+", 1),
        updated_at: now,
      }))
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .execute();
    return { noop: false, rolledBack, conflict };
  });
  if (!done.noop) await finishRollbackIfDone(db, ref, now);
  return done;
}

/** failRollbackChunk gives up reverting a poison chunk: its items stay as they are, and the rollback ends. */
export async function failRollbackChunk(db: BulkDb, ref: ChunkRef, reason: string, now = new Date()): Promise<void> {
  const failed = await db
    .updateTable("bulk_job_chunks")
    .set({ state: "failed", error: reason.slice(0, 1000) })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .where("state", "=", "rollback_queued")
    .executeTakeFirst();
  if (failed.numUpdatedRows !== 1n) return;
  await db
    .updateTable("bulk_jobs")
    .set((eb) => ({ chunks_done: eb("chunks_done", "+", 1), error: `rollback of chunk ${ref.chunkNo} failed: ${reason}`.slice(0, 1000), version: eb("version", "+", 1), updated_at: now }))
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .execute();
  await finishRollbackIfDone(db, ref, now);
}

/** finishRollbackIfDone moves a rolling-back job whose chunks are all reverted to ROLLED_BACK. */
async function finishRollbackIfDone(db: BulkDb, ref: { merchantId: string; jobId: string }, now: Date): Promise<void> {
  await inTransaction(db, (trx) =>
    endJob(trx, ref, { state: "rolled_back" }, now, (eb) => eb.and([eb("state", "=", "rolling_back"), eb("chunks_done", ">=", eb.ref("chunk_count"))])),
  );
}

/** revive turns an audit snapshot's date strings back into Dates. */
function revive(p: Product): Product {
  return { ...p, createdAt: new Date(p.createdAt), updatedAt: new Date(p.updatedAt) };
}
