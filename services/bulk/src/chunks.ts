/**
 * The chunk ledger (bulk_job_chunks): the only module that writes it. A
 * chunk's row is what makes its work exactly-once: a worker locks it first
 * (lockChunk), and only a chunk still `queued` (or `rollback_queued`) is
 * worked on; the same transaction moves it on. Publishing claims a chunk
 * here (published_at) before its message goes to JetStream.
 *
 * States: queued → applied (or failed / cancelled); a rollback moves
 * applied → rollback_queued → rolled_back (or failed).
 */
import type { ExpressionBuilder } from "kysely";
import { deferWrite, deleteInBatches, insertRows } from "@stockroom/common/db";
import type { ChunkRef, JobRef } from "./domain.ts";
import type { BulkDb, BulkJobChunkRow, BulkTables, BulkTx } from "./store.ts";

export type ChunkState = BulkJobChunkRow["state"];

/** PENDING are the chunk states that wait for a worker: applying, or reverting a rollback. */
export const PENDING: readonly ChunkState[] = ["queued", "rollback_queued"];

/**
 * insertChunk records a staged chunk of the given format (domain.ts
 * CHUNK_FORMAT), queued and not yet published; a format-3 chunk carries its
 * encoded lines (items.ts encodeChunkItems).
 */
export async function insertChunk(
  trx: BulkTx,
  ref: ChunkRef,
  lines: { first: number; last: number; count: number },
  format: number,
  items: Buffer | null = null,
): Promise<void> {
  // insertRows: a chunk's items (tens of KiB) go as a prepared statement's value, not as hex text.
  await insertRows(trx, "bulk_job_chunks", [
    {
      merchant_id: ref.merchantId,
      job_id: ref.jobId,
      chunk_no: ref.chunkNo,
      first_line: lines.first,
      last_line: lines.last,
      item_count: lines.count,
      format,
      state: "queued",
      attempt: 0,
      published_at: null,
      applied_at: null,
      error: "",
      items,
      applied_versions: null,
    },
  ]);
}

/** lockChunk reads and locks a chunk's ledger row: concurrent deliveries of one chunk queue here. */
export function lockChunk(trx: BulkTx, ref: ChunkRef) {
  return trx
    .selectFrom("bulk_job_chunks")
    .selectAll()
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .forUpdate()
    .executeTakeFirst();
}

/**
 * setChunkState moves a chunk the transaction holds locked (lockChunk) to
 * its next state; an applied format-3 chunk records the versions its lines
 * reached (items.ts). Deferred (deferred-writes.ts): the row is locked, so
 * the update cannot miss, and it travels with the transaction's next
 * statement.
 */
export async function setChunkState(
  trx: BulkTx,
  ref: ChunkRef,
  state: "applied" | "cancelled" | "failed" | "rolled_back",
  now: Date,
  error?: string,
  appliedVersions?: (number | null)[],
): Promise<void> {
  const update = trx
    .updateTable("bulk_job_chunks")
    .set(
      state === "rolled_back"
        ? { state }
        : {
            state,
            applied_at: now,
            error: error ?? "",
            ...(appliedVersions ? { applied_versions: JSON.stringify(appliedVersions) } : {}),
          },
    )
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .compile();
  await deferWrite(trx, update);
}

/** cancelChunks makes sure none of a job's chunks is ever applied. */
export async function cancelChunks(db: BulkDb | BulkTx, ref: JobRef): Promise<void> {
  await db
    .updateTable("bulk_job_chunks")
    .set({ state: "cancelled" })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("state", "=", "queued")
    .execute();
}

/**
 * queueForRollback re-queues a job's applied chunks as rollback work (a new
 * attempt, to be published again) and marks those that never applied as
 * rolled back, and returns how many of those there were (done already).
 */
export async function queueForRollback(trx: BulkTx, ref: JobRef): Promise<number> {
  await trx
    .updateTable("bulk_job_chunks")
    .set((eb) => ({ state: "rollback_queued", attempt: eb("attempt", "+", 1), published_at: null }))
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("state", "=", "applied")
    .execute();
  const idle = await trx
    .updateTable("bulk_job_chunks")
    .set({ state: "rolled_back" })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("state", "in", ["queued", "failed", "cancelled"])
    .executeTakeFirst();
  return Number(idle.numUpdatedRows);
}

/** failRollbackOf gives up reverting a chunk still queued for rollback, and tells whether it did. */
export async function failRollbackOf(db: BulkDb | BulkTx, ref: ChunkRef, reason: string): Promise<boolean> {
  const failed = await db
    .updateTable("bulk_job_chunks")
    .set({ state: "failed", error: reason.slice(0, 1000) })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .where("state", "=", "rollback_queued")
    .executeTakeFirst();
  return failed.numUpdatedRows === 1n;
}

/** jobTraceContext selects, beside a bulk_job_chunks row, its job's stored trace context (same merchant: one shard). */
function jobTraceContext(eb: ExpressionBuilder<BulkTables, "bulk_job_chunks">) {
  return eb
    .selectFrom("bulk_jobs")
    .select("bulk_jobs.trace_context")
    .whereRef("bulk_jobs.merchant_id", "=", "bulk_job_chunks.merchant_id")
    .whereRef("bulk_jobs.job_id", "=", "bulk_job_chunks.job_id")
    .as("trace_context");
}

/** countPublished counts a job's pending chunks whose message is out (published and not yet done). */
export async function countPublished(db: BulkDb, job: JobRef): Promise<number> {
  const row = await db
    .selectFrom("bulk_job_chunks")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("merchant_id", "=", job.merchantId)
    .where("job_id", "=", job.jobId)
    .where("state", "in", PENDING)
    .where("published_at", "is not", null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** nextUnpublished lists a job's first `limit` pending chunks not yet published, with the job's trace context. */
export function nextUnpublished(db: BulkDb, job: JobRef, limit: number) {
  return db
    .selectFrom("bulk_job_chunks")
    .select(["chunk_no", "attempt", "format"])
    .select(jobTraceContext)
    .where("merchant_id", "=", job.merchantId)
    .where("job_id", "=", job.jobId)
    .where("state", "in", PENDING)
    .where("published_at", "is", null)
    .orderBy("chunk_no")
    .limit(limit)
    .execute();
}

/** claimForPublish marks an unpublished chunk as published, and tells whether this caller won it. */
export async function claimForPublish(db: BulkDb, ref: ChunkRef, now = new Date()): Promise<boolean> {
  const claimed = await db
    .updateTable("bulk_job_chunks")
    .set({ published_at: now })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .where("published_at", "is", null)
    .executeTakeFirst();
  return claimed.numUpdatedRows === 1n;
}

/** releaseClaim hands a claimed chunk back (its publish failed), unless a new attempt took it meanwhile. */
export async function releaseClaim(db: BulkDb, ref: ChunkRef, attempt: number): Promise<void> {
  await db
    .updateTable("bulk_job_chunks")
    .set({ published_at: null })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .where("attempt", "=", attempt)
    .execute();
}

/**
 * stalePublished lists pending chunks published before `before` (across
 * merchants: the reconciler's maintenance scan), with their jobs' trace context.
 */
export function stalePublished(db: BulkDb, before: Date, limit: number) {
  return db
    .selectFrom("bulk_job_chunks")
    .select(["merchant_id", "job_id", "chunk_no", "attempt", "format"])
    .select(jobTraceContext)
    .where("state", "in", PENDING)
    .where("published_at", "<", before)
    .limit(limit)
    .execute();
}

/** claimNextAttempt moves a still-pending chunk from `attempt` to attempt + 1, published now; it tells whether this caller won. */
export async function claimNextAttempt(db: BulkDb, ref: ChunkRef, attempt: number, now: Date): Promise<boolean> {
  const claimed = await db
    .updateTable("bulk_job_chunks")
    .set({ attempt: attempt + 1, published_at: now })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .where("state", "in", PENDING)
    .where("attempt", "=", attempt)
    .executeTakeFirst();
  return claimed.numUpdatedRows === 1n;
}

/** jobsWithUnpublished lists jobs (across merchants) that have pending chunks not yet published. */
export function jobsWithUnpublished(db: BulkDb, limit: number) {
  return db
    .selectFrom("bulk_job_chunks")
    .select(["merchant_id", "job_id"])
    .where("state", "in", PENDING)
    .where("published_at", "is", null)
    .groupBy(["merchant_id", "job_id"])
    .limit(limit)
    .execute();
}

/** deleteChunks removes a job's ledger (retention, or a discarded duplicate upload), batch rows per statement. */
export function deleteChunks(db: BulkDb, ref: JobRef, batch: number): Promise<number> {
  return deleteInBatches(
    () =>
      db
        .deleteFrom("bulk_job_chunks")
        .where("merchant_id", "=", ref.merchantId)
        .where("job_id", "=", ref.jobId)
        .limit(batch)
        .executeTakeFirst(),
    batch,
  );
}
