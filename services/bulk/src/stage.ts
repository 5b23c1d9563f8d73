/**
 * Staging: parsed lines become bulk_job_items rows (valid ones pending, with
 * the product version seen at staging time for the conflict policy; invalid
 * ones with their errors), in batches, and the valid items are cut into
 * chunks recorded in the chunk ledger. Memory stays bounded by one batch.
 */
import { inTransaction, insertRows } from "@stockroom/common/db";
import { cancelChunks, insertChunk } from "./chunks.ts";
import { CHUNK_FORMAT, format2Columns, itemFormat, outcomeState, type JobRef, type JobState } from "./domain.ts";
import { findJob, moveJob } from "./jobs.ts";
import type { ParsedLine } from "./parse/types.ts";
import type { BulkDb } from "./store.ts";

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
   * The newest chunk format to stage (default CHUNK_FORMAT). While workers of
   * a release before chunk formats may still run (BULK_CHUNK_FORMAT=1 during
   * that roll), a line that needs a newer format is refused with
   * FIELD_NOT_ENABLED instead of being staged where such a worker would apply
   * it without its new fields.
   */
  maxFormat?: number;
}

/** gate turns a valid line that needs a newer chunk format than maxFormat into an invalid one. */
function gate(line: ParsedLine, maxFormat: number): ParsedLine {
  if (line.kind !== "valid" || itemFormat(line.item) <= maxFormat) return line;
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
 * its counts. Parsing the
 * next batch overlaps with writing the previous one (one write in flight),
 * so the parser's CPU and the database's run side by side.
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
    writing = writeBatch(db, ref, lines, chunkNo, options.stagedVersions);
    writing.catch(() => {}); // awaited by the next close or at the end
  };
  const maxFormat = options.maxFormat ?? CHUNK_FORMAT;
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

/** writeBatch stores one batch of lines and, when it has valid items, its chunk's ledger row, in one transaction. */
async function writeBatch(db: BulkDb, ref: JobRef, batch: ParsedLine[], chunkNo: number | null, stagedVersions: boolean): Promise<void> {
  const valid = batch.filter((l): l is Extract<ParsedLine, { kind: "valid" }> => l.kind === "valid");
  const versions = new Map<string, number>();
  if (stagedVersions && valid.length > 0) {
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
  await db.transaction().execute(async (trx) => {
    await insertRows(
      trx,
      "bulk_job_items",
      batch.map((l) =>
        l.kind === "valid"
          ? {
              merchant_id: ref.merchantId,
              job_id: ref.jobId,
              line_no: l.line,
              sku: l.item.sku,
              chunk_no: chunkNo,
              payload: JSON.stringify(l.item),
              staged_version: versions.get(l.item.sku) ?? null,
              outcome: "pending",
              errors: null,
              product_version: null,
            }
          : {
              merchant_id: ref.merchantId,
              job_id: ref.jobId,
              line_no: l.line,
              sku: l.sku.slice(0, 128),
              chunk_no: null,
              payload: null,
              staged_version: null,
              outcome: "invalid",
              errors: JSON.stringify(l.errors),
              product_version: null,
            },
      ),
    );
    if (chunkNo !== null) {
      const format = Math.max(...valid.map((l) => itemFormat(l.item)));
      await insertChunk(trx, { ...ref, chunkNo }, { first: valid[0]!.line, last: valid.at(-1)!.line, count: valid.length }, format);
    }
  });
}

/**
 * finishStaging records the counts and moves the job on: to QUEUED when it
 * has chunks to apply, or straight to its final state for a dry run or a
 * file without a single valid item.
 */
export async function finishStaging(db: BulkDb, ref: JobRef, staged: StageResult, dryRun: boolean, now = new Date()): Promise<JobState> {
  const done = dryRun || staged.chunks === 0;
  const state: JobState = !done ? "queued" : outcomeState({ invalid: staged.invalid, conflict: 0, failed: 0 });
  return inTransaction(db, async (trx) => {
    const counts = {
      total_items: staged.total,
      valid_items: staged.valid,
      invalid_items: staged.invalid,
      chunk_count: dryRun ? 0 : staged.chunks,
    };
    // Not moved: the job was cancelled while it was validating, and its chunks will be cancelled as they come.
    if (!(await moveJob(trx, ref, state, now, counts))) return (await findJob(trx, ref.merchantId, ref.jobId))!.state;
    // A dry run validates and reports; its chunks are never applied.
    if (dryRun) await cancelChunks(trx, ref);
    return state;
  });
}
