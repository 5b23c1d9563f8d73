/**
 * Staging: parsed lines become bulk_job_items rows (valid ones pending, with
 * the product version seen at staging time for the conflict policy; invalid
 * ones with their errors), in batches, and the valid items are cut into
 * chunks recorded in the chunk ledger. Memory stays bounded by one batch.
 */
import { inTransaction, insertRows } from "@stockroom/common/db.ts";
import type { BulkDb, BulkTx } from "./apply.ts";
import { recordJobFinished } from "./events.ts";
import type { ParsedLine } from "./parse/types.ts";
import type { BulkJobRow } from "./store.ts";

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
}

/**
 * stageLines stores every line of a job and returns its counts. Parsing the
 * next batch overlaps with writing the previous one (one write in flight),
 * so the parser's CPU and the database's run side by side.
 */
export async function stageLines(
  db: BulkDb,
  ref: { merchantId: string; jobId: string },
  lines: AsyncIterable<ParsedLine>,
  options: StageOptions,
): Promise<StageResult> {
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
  try {
    for await (const line of lines) {
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
async function writeBatch(
  db: BulkDb,
  ref: { merchantId: string; jobId: string },
  batch: ParsedLine[],
  chunkNo: number | null,
  stagedVersions: boolean,
): Promise<void> {
  const valid = batch.filter((l): l is Extract<ParsedLine, { kind: "valid" }> => l.kind === "valid");
  const versions = new Map<string, number>();
  if (stagedVersions && valid.length > 0) {
    const rows = await db
      .selectFrom("products")
      .select(["sku", "version"])
      .where("merchant_id", "=", ref.merchantId)
      .where("sku", "in", valid.map((l) => l.item.sku))
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
      await trx
        .insertInto("bulk_job_chunks")
        .values({
          merchant_id: ref.merchantId,
          job_id: ref.jobId,
          chunk_no: chunkNo,
          first_line: valid[0]!.line,
          last_line: valid.at(-1)!.line,
          item_count: valid.length,
          state: "queued",
          attempt: 0,
          published_at: null,
          applied_at: null,
          error: "",
        })
        .execute();
    }
  });
}

/**
 * finishStaging records the counts and moves the job on: to QUEUED when it
 * has chunks to apply, or straight to its final state for a dry run or a
 * file without a single valid item.
 */
export async function finishStaging(
  db: BulkDb,
  ref: { merchantId: string; jobId: string },
  staged: StageResult,
  dryRun: boolean,
  now = new Date(),
): Promise<BulkJobRow["state"]> {
  const done = dryRun || staged.chunks === 0;
  const state: BulkJobRow["state"] = !done ? "queued" : staged.invalid > 0 ? "partially_succeeded" : "succeeded";
  await inTransaction(db, async (trx) => {
    await trx
      .updateTable("bulk_jobs")
      .set((eb) => ({
        state,
        total_items: staged.total,
        valid_items: staged.valid,
        invalid_items: staged.invalid,
        chunk_count: dryRun ? 0 : staged.chunks,
        version: eb("version", "+", 1),
        updated_at: now,
        ended_at: done ? now : null,
      }))
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .execute();
    // A dry run validates and reports; its chunks are never applied.
    if (dryRun) await cancelChunks(trx, ref);
    if (done) await recordJobFinished(trx, ref, now);
  });
  return state;
}

/** cancelChunks makes sure none of a job's chunks is ever applied. */
export async function cancelChunks(db: BulkDb | BulkTx, ref: { merchantId: string; jobId: string }): Promise<void> {
  await db
    .updateTable("bulk_job_chunks")
    .set({ state: "cancelled" })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("state", "=", "queued")
    .execute();
}
