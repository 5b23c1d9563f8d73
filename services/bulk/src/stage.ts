/**
 * Staging: parsed lines are stored in batches (valid ones with the product
 * version seen at staging time for the conflict policy; invalid ones with
 * their errors), and the valid items are cut into chunks recorded in the
 * chunk ledger: in format 3 inside the chunk's ledger row, in formats 1 and
 * 2 as a bulk_job_items row per line (items.ts). Memory stays bounded by one
 * batch.
 */
import { inTransaction, insertRows } from "@stockroom/common/db";
import { cancelChunks, insertChunk } from "./chunks.ts";
import { format2Columns, itemFormat, outcomeState, ROW_FORMAT, type JobRef, type JobState } from "./domain.ts";
import { encodeChunkItems } from "./items.ts";
import { findJob, moveJob } from "./jobs.ts";
import type { ParsedLine } from "./parse/types.ts";
import type { BulkDb, BulkJobItemRow } from "./store.ts";

export type { ParsedLine };

export interface StageResult {
  total: number;
  valid: number;
  invalid: number;
  chunks: number;
}

export interface StageOptions {
  /** Valid items per chunk. */
  chunkSize: number;
  /**
   * Record each product's version at staging time. Only the SKIP conflict
   * policy reads it; OVERWRITE jobs save the lookup.
   */
  stagedVersions: boolean;
  /**
   * The newest chunk format to stage (ingest passes BULK_CHUNK_FORMAT, by
   * default CHUNK_FORMAT). Up to ROW_FORMAT, lines are staged a row each
   * (what callers that read bulk_job_items line by line get by default);
   * above it, compact (format 3). While workers of a release before chunk
   * formats may still run (BULK_CHUNK_FORMAT=1 during that roll), a line
   * that needs a newer format is refused with FIELD_NOT_ENABLED instead of
   * being staged where such a worker would apply it without its new fields.
   */
  maxFormat?: number;
  /**
   * Called once each chunk is committed, while the rest of the file is still
   * being staged (ingest publishes it, so applying overlaps staging). It is
   * awaited before the next chunk is written; what it throws fails staging.
   */
  onChunk?: (chunkNo: number) => Promise<void>;
}

/** gate turns a valid line that needs a newer chunk format than maxFormat into an invalid one. */
function gate(line: ParsedLine, maxFormat: number): ParsedLine {
  // Format 3 on holds every field: only a row format (BULK_CHUNK_FORMAT 1 or 2, during a roll) turns lines away.
  if (line.kind !== "valid" || maxFormat > ROW_FORMAT || itemFormat(line.item) <= maxFormat) return line;
  const fields = format2Columns(line.item);
  return {
    line: line.line,
    kind: "invalid",
    sku: line.item.sku,
    errors: fields.map((field) => ({
      field,
      code: "FIELD_NOT_ENABLED",
      message: `${field} is not accepted yet: this deployment stages chunk format ${maxFormat} while older workers run (BULK_CHUNK_FORMAT)`,
    })),
  };
}

/**
 * stageLines moves a job to VALIDATING, stores every line of it and returns
 * its counts. Parsing the next batch overlaps with writing the previous one
 * (one write in flight), so the parser's CPU and the database's run side by
 * side.
 */
export async function stageLines(db: BulkDb, ref: JobRef, lines: AsyncIterable<ParsedLine>, options: StageOptions): Promise<StageResult> {
  await inTransaction(db, (trx) => moveJob(trx, ref, "validating", new Date()));
  const result: StageResult = { total: 0, valid: 0, invalid: 0, chunks: 0 };
  let batch: ParsedLine[] = [];
  let validInBatch = 0;
  let writing: Promise<void> = Promise.resolve();
  const close = async () => {
    if (batch.length === 0) return;
    const lines = batch;
    const chunkNo = validInBatch > 0 ? result.chunks++ : null;
    result.valid += validInBatch;
    result.invalid += lines.length - validInBatch;
    batch = [];
    validInBatch = 0;
    await writing;
    writing = writeBatch(db, ref, lines, chunkNo, options).then(() => (chunkNo === null ? undefined : options.onChunk?.(chunkNo)));
    writing.catch(() => {}); // awaited by the next close or at the end
  };
  const maxFormat = options.maxFormat ?? ROW_FORMAT;
  try {
    for await (const staged of lines) {
      const line = gate(staged, maxFormat);
      result.total++;
      batch.push(line);
      if (line.kind === "valid") validInBatch++;
      // A batch closes at chunkSize valid items (one chunk), or when invalid lines pile up.
      if (validInBatch >= options.chunkSize || batch.length >= 4 * options.chunkSize) await close();
    }
    await close();
  } finally {
    // Whatever happened, no write may land after the caller has moved on (e.g. failed the job).
    await writing.catch(() => {});
  }
  await writing;
  return result;
}

/**
 * writeBatch stores one batch of lines and, when it has valid items, its
 * chunk's ledger row, in one transaction: in format 3 the valid lines go
 * into the ledger row and only invalid ones get bulk_job_items rows; in
 * formats 1 and 2 every line gets a row.
 */
async function writeBatch(db: BulkDb, ref: JobRef, batch: ParsedLine[], chunkNo: number | null, options: StageOptions): Promise<void> {
  const valid = batch.filter((l): l is Extract<ParsedLine, { kind: "valid" }> => l.kind === "valid");
  const versions = new Map<string, number>();
  if (options.stagedVersions && valid.length > 0) {
    const rows = await db
      .selectFrom("products")
      .select(["sku", "version"])
      .where("merchant_id", "=", ref.merchantId)
      .where(
        "sku",
        "in",
        valid.map((l) => l.item.sku),
      )
      .execute();
    for (const r of rows) versions.set(r.sku, Number(r.version));
  }
  const maxFormat = options.maxFormat ?? ROW_FORMAT;
  const format = maxFormat > ROW_FORMAT ? maxFormat : Math.max(1, ...valid.map((l) => itemFormat(l.item)));
  type StagedRow = Pick<BulkJobItemRow, "line_no" | "sku" | "payload" | "staged_version" | "outcome" | "errors">;
  const rows = batch.flatMap((l): StagedRow[] => {
    if (l.kind === "invalid") {
      return [
        {
          line_no: l.line,
          sku: l.sku.slice(0, 128),
          payload: null,
          staged_version: null,
          outcome: "invalid",
          errors: JSON.stringify(l.errors),
        },
      ];
    }
    if (format > ROW_FORMAT) return [];
    const staged = versions.get(l.item.sku) ?? null;
    return [
      { line_no: l.line, sku: l.item.sku, payload: JSON.stringify(l.item), staged_version: staged, outcome: "pending", errors: null },
    ];
  });
  const items =
    chunkNo !== null && format > ROW_FORMAT
      ? await encodeChunkItems(valid.map((l) => ({ line: l.line, stagedVersion: versions.get(l.item.sku) ?? null, item: l.item })))
      : null;
  await db.transaction().execute(async (trx) => {
    if (rows.length > 0) {
      await insertRows(
        trx,
        "bulk_job_items",
        rows.map((r) => ({
          merchant_id: ref.merchantId,
          job_id: ref.jobId,
          chunk_no: r.outcome === "invalid" ? null : chunkNo,
          product_version: null,
          ...r,
        })),
      );
    }
    if (chunkNo !== null) {
      await insertChunk(trx, { ...ref, chunkNo }, { first: valid[0]!.line, last: valid.at(-1)!.line, count: valid.length }, format, items);
    }
  });
}

/**
 * finishStaging records the counts and moves the job on: to QUEUED when it
 * has chunks to apply, or straight to its final state for a dry run, a file
 * without a single valid item, or a job whose chunks were all applied while
 * it was still being staged (ingest publishes chunks as they are staged).
 * Chunks applied meanwhile added their counts to the job already: the
 * staging counts are added to them, under the job's row lock.
 */
export async function finishStaging(db: BulkDb, ref: JobRef, staged: StageResult, dryRun: boolean, now = new Date()): Promise<JobState> {
  return inTransaction(db, async (trx) => {
    const job = (await findJob(trx, ref.merchantId, ref.jobId, true))!;
    const invalid = Number(job.invalid_items) + staged.invalid;
    const chunks = dryRun ? 0 : staged.chunks;
    const done = chunks === 0 || Number(job.chunks_done) >= chunks;
    const state: JobState = !done
      ? "queued"
      : outcomeState({ invalid, conflict: Number(job.conflict_items), failed: Number(job.failed_items) });
    const counts = { total_items: staged.total, valid_items: staged.valid, invalid_items: invalid, chunk_count: chunks };
    // Not moved: the job was cancelled while it was validating, and its chunks will be cancelled as they come.
    if (!(await moveJob(trx, ref, state, now, counts))) return job.state;
    // A dry run validates and reports; its chunks are never applied.
    if (dryRun) await cancelChunks(trx, ref);
    return state;
  });
}
