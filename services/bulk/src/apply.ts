/**
 * Applying one chunk of a bulk job: ONE transaction that locks the chunk's
 * ledger row and its products, writes the changed products through the
 * catalog's product-write port (with their audit entries and outbox events),
 * records each item's outcome (items.ts: in format 3 a row only for the
 * items that did not apply), marks the chunk applied and advances the job. A redelivered chunk finds its ledger row already applied and
 * changes nothing.
 */
import { lockProducts, writeProducts, type ProductWrite } from "@stockroom/catalog";
import { inTransaction } from "@stockroom/common/db";
import { lockChunk, setChunkState } from "./chunks.ts";
import { CHUNK_FORMAT, FINAL_STATES, mergeItem, outcomeState, type ChunkRef, type JobState } from "./domain.ts";
import { compact, failPendingItems, pendingLines, writeOutcomes, type ItemOutcomeRow } from "./items.ts";
import { chunksAllDone, countChunk, findJob, jobActor, moveJob, type ChunkCounts } from "./jobs.ts";
import type { BulkDb, BulkTx } from "./store.ts";

export interface ChunkOutcome {
  /** The chunk was already applied, failed or cancelled, or is of a newer format: nothing was done. */
  noop: boolean;
  /** The chunk is queued in a format newer than this worker's (maxFormat): left for a newer worker. */
  newerFormat?: number;
  counts: Record<"applied" | "unchanged" | "conflict" | "invalid", number>;
  /** The job's state after this chunk. */
  jobState?: JobState;
  /** Items failChunk marked FAILED. */
  failed?: number;
}

/**
 * applyChunk applies one chunk exactly once; see the module comment. It runs
 * at READ COMMITTED: the ledger row lock already makes it exactly-once, and
 * under REPEATABLE READ the locking read of SKUs that do not exist yet takes
 * gap locks that serialize (and deadlock) every chunk of a job adding new
 * products. New products are plain INSERTs, so a product created meanwhile
 * by a real-time call fails the chunk on its key; the redelivered chunk then
 * sees it and applies the conflict policy instead of overwriting it.
 */
export async function applyChunk(db: BulkDb, ref: ChunkRef, now = new Date(), maxFormat = CHUNK_FORMAT): Promise<ChunkOutcome> {
  return inTransaction(
    db,
    async (trx) => {
      const counts = { applied: 0, unchanged: 0, conflict: 0, invalid: 0 };
      const chunk = await lockChunk(trx, ref);
      if (chunk?.state !== "queued") return { noop: true, counts };
      // The ledger has the final word on the format (a message could be older than its chunk's row).
      if (chunk.format > maxFormat) return { noop: true, counts, newerFormat: chunk.format };
      const job = (await findJob(trx, ref.merchantId, ref.jobId))!;
      if (job.state === "cancelled" || job.dry_run) {
        await setChunkState(trx, ref, "cancelled", now);
        return { noop: true, counts, jobState: job.state };
      }

      const items = await pendingLines(trx, ref, chunk);
      const current = await lockProducts(
        trx,
        ref.merchantId,
        items.map((i) => i.sku),
      );
      const writes: ProductWrite[] = [];
      /** The outcome row of each applied item waits for its product's version, known once written. */
      const applied: ItemOutcomeRow[] = [];
      const outcomes: ItemOutcomeRow[] = [];
      for (const item of items) {
        const merge = mergeItem(current.get(item.sku), item.item, item.staged_version, job.conflict_policy, now);
        counts[merge.outcome]++;
        const row: ItemOutcomeRow = { line_no: item.line_no, sku: item.sku, outcome: merge.outcome, errors: null, product_version: null };
        switch (merge.outcome) {
          case "applied":
            writes.push(
              merge.before
                ? { kind: "update", before: merge.before, fields: merge.next, changedFields: merge.changed }
                : { kind: "create", product: merge.next },
            );
            applied.push(row);
            break;
          case "unchanged":
            row.product_version = merge.version;
            break;
          case "conflict":
            row.errors = [
              { field: "", code: "CHANGED_SINCE_STAGED", message: "the product changed after the job read it; kept the newer edit" },
            ];
            row.product_version = merge.version;
            break;
          case "invalid":
            row.errors = merge.errors;
            break;
        }
        outcomes.push(row);
      }

      const written = await writeProducts(
        trx,
        // The changes are the job creator's; their source names the job.
        { merchantId: ref.merchantId, actor: jobActor(job, "apply"), sourceKind: "bulk_job", sourceRef: ref.jobId },
        writes,
        now,
      );
      for (const [i, product] of written.entries()) applied[i]!.product_version = product.version;
      if (compact(chunk)) {
        // Applied lines keep their version in the ledger row; only the others get an outcome row.
        await writeOutcomes(
          trx,
          ref,
          outcomes.filter((o) => o.outcome !== "applied"),
        );
        const versions = outcomes.map((o) => (o.outcome === "applied" ? o.product_version : null));
        await setChunkState(trx, ref, "applied", now, undefined, versions);
      } else {
        await writeOutcomes(trx, ref, outcomes);
        await setChunkState(trx, ref, "applied", now);
      }
      const jobState = await advanceJob(trx, ref, counts, now);
      return { noop: false, counts, jobState };
    },
    { isolation: "read committed" },
  );
}

/**
 * advanceJob adds a finished chunk's counts to its job and moves the job on:
 * to RUNNING after its first chunk, to its final state after its last. A
 * chunk applied while its job is still being staged (VALIDATING: the chunk
 * count is not known yet) only adds its counts; finishStaging moves the job.
 */
async function advanceJob(trx: BulkTx, ref: ChunkRef, counts: ChunkCounts, now: Date): Promise<JobState> {
  const job = await countChunk(trx, ref, counts, now);
  if (FINAL_STATES.has(job.state) || job.state === "rolling_back" || job.state === "validating") return job.state;
  if (job.chunks_done >= job.chunk_count) {
    const final = outcomeState({
      invalid: Number(job.invalid_items),
      conflict: Number(job.conflict_items),
      failed: Number(job.failed_items),
    });
    if (await moveJob(trx, ref, final, now, {}, chunksAllDone)) return final;
  } else if (job.state === "queued" && (await moveJob(trx, ref, "running", now))) {
    return "running";
  }
  return job.state;
}

/**
 * failChunk gives up on a poison chunk (it failed every delivery): its
 * pending items become FAILED with the reason, and the job moves on.
 */
export async function failChunk(db: BulkDb, ref: ChunkRef, reason: string, now = new Date()): Promise<ChunkOutcome> {
  return inTransaction(db, async (trx) => {
    const counts = { applied: 0, unchanged: 0, conflict: 0, invalid: 0 };
    const chunk = await lockChunk(trx, ref);
    if (chunk?.state !== "queued") return { noop: true, counts };
    const failed = await failPendingItems(trx, ref, chunk, reason);
    await setChunkState(trx, ref, "failed", now, reason.slice(0, 1000));
    const jobState = await advanceJob(trx, ref, { ...counts, failed }, now);
    return { noop: false, counts, jobState, failed };
  });
}
