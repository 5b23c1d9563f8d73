/**
 * A job's items, wherever they are kept. Chunks of formats 1 and 2 stage a
 * bulk_job_items row per line and their transactions update each row with
 * its outcome. A format-3 chunk (domain.ts) keeps its staged lines in its
 * ledger row, and bulk_job_items gets rows only for lines that did not
 * apply (invalid at staging or in the chunk, unchanged, conflict, failed);
 * a line without a row has the outcome its chunk implies: pending until the
 * chunk applies, then applied (at the version kept in applied_versions),
 * and rolled back once the chunk is. Readers (listItems, the chunk
 * transactions) see the same items either way.
 */
import { promisify } from "node:util";
import { deflateRaw, inflateRawSync } from "node:zlib";
import { deleteInBatches, insertRows, jsonColumn } from "@stockroom/common/db";
import { ROW_FORMAT, type ChunkRef, type ItemOutcome, type JobRef, type StagedItem } from "./domain.ts";
import type { ItemError } from "./parse/types.ts";
import type { BulkDb, BulkJobChunkRow, BulkJobItemRow, BulkTx } from "./store.ts";

/** ItemOutcomeRow is the outcome a chunk transaction records for one line. */
export interface ItemOutcomeRow {
  line_no: number;
  sku: string;
  outcome: ItemOutcome;
  errors: ItemError[] | null;
  product_version: number | null;
}

/** ChunkLine is one staged line of a chunk. */
export interface ChunkLine {
  line_no: number;
  sku: string;
  item: StagedItem;
  staged_version: number | null;
  /** The version the line's product reached when the chunk applied it (lines read as applied). */
  product_version: number | null;
}

/** ListedItem is one item as ListBulkJobItems and the report show it. */
export type ListedItem = Pick<BulkJobItemRow, "line_no" | "sku" | "outcome" | "errors" | "product_version">;

/** A chunk's row as the item readers need it. */
type ChunkItems = Pick<BulkJobChunkRow, "format" | "first_line" | "last_line" | "state" | "items" | "applied_versions">;

/** compact tells whether a chunk keeps its lines in its ledger row (format 3 on). */
export function compact(chunk: Pick<BulkJobChunkRow, "format">): boolean {
  return chunk.format > ROW_FORMAT;
}

/**
 * encodeChunkItems packs a chunk's staged lines for its ledger row: JSON
 * tuples [line, staged version, item], deflated at level 1 (a clean file's
 * lines shrink about 4x for a few ms per thousand, which the chunk's redo
 * and buffer pool pages pay back). The deflate runs on libuv's thread pool:
 * the bulk API's main thread, which parses the rest of the file, is a job's
 * critical path.
 */
export function encodeChunkItems(lines: readonly { line: number; stagedVersion: number | null; item: StagedItem }[]): Promise<Buffer> {
  return deflate(JSON.stringify(lines.map((l) => [l.line, l.stagedVersion, l.item])), { level: 1 });
}

const deflate = promisify(deflateRaw);

/** decodeChunkItems unpacks what encodeChunkItems packed, in line order. */
export function decodeChunkItems(data: Buffer): Omit<ChunkLine, "product_version">[] {
  const tuples = JSON.parse(inflateRawSync(data).toString("utf8")) as [number, number | null, StagedItem][];
  return tuples.map(([line_no, staged_version, item]) => ({ line_no, sku: item.sku, item, staged_version }));
}

/** appliedVersions reads a format-3 chunk's applied_versions (null: it never applied). */
function appliedVersions(chunk: Pick<BulkJobChunkRow, "applied_versions">): (number | null)[] | null {
  return chunk.applied_versions === null ? null : jsonColumn<(number | null)[]>(chunk.applied_versions);
}

/** rowLines lists the lines in [first, last] that have a bulk_job_items row. */
async function rowLines(db: BulkDb | BulkTx, ref: JobRef, first: number, last: number): Promise<Set<number>> {
  const rows = await db
    .selectFrom("bulk_job_items")
    .select("line_no")
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("line_no", ">=", first)
    .where("line_no", "<=", last)
    .execute();
  return new Set(rows.map((r) => Number(r.line_no)));
}

/** rowItems reads a row-staged chunk's lines (first_line..last_line) that have the given outcome, in line order. */
async function rowItems(trx: BulkTx, ref: ChunkRef, chunk: ChunkItems, outcome: ItemOutcome): Promise<ChunkLine[]> {
  const rows = await trx
    .selectFrom("bulk_job_items")
    .select(["line_no", "sku", "payload", "staged_version", "product_version"])
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("line_no", ">=", chunk.first_line)
    .where("line_no", "<=", chunk.last_line)
    .where("outcome", "=", outcome)
    .orderBy("line_no")
    .execute();
  return rows.map((r) => ({
    line_no: Number(r.line_no),
    sku: r.sku,
    item: jsonColumn<StagedItem>(r.payload),
    staged_version: r.staged_version === null ? null : Number(r.staged_version),
    product_version: r.product_version === null ? null : Number(r.product_version),
  }));
}

/**
 * pendingLines reads the lines a queued chunk (locked by the caller) is to
 * apply. A queued format-3 chunk has no outcome rows yet: they are written
 * in the transaction that moves it on.
 */
export async function pendingLines(trx: BulkTx, ref: ChunkRef, chunk: ChunkItems): Promise<ChunkLine[]> {
  if (!compact(chunk)) return rowItems(trx, ref, chunk, "pending");
  return decodeChunkItems(chunk.items!).map((l) => ({ ...l, product_version: null }));
}

/** appliedLines reads the lines of a chunk (locked by the caller) that it applied, with the versions they reached. */
export async function appliedLines(trx: BulkTx, ref: ChunkRef, chunk: ChunkItems): Promise<ChunkLine[]> {
  if (!compact(chunk)) return rowItems(trx, ref, chunk, "applied");
  const versions = appliedVersions(chunk);
  if (!versions) return [];
  const taken = await rowLines(trx, ref, chunk.first_line, chunk.last_line);
  return decodeChunkItems(chunk.items!)
    .map((l, i) => ({ ...l, product_version: versions[i] ?? null }))
    .filter((l) => l.product_version !== null && !taken.has(l.line_no));
}

/**
 * writeOutcomes records many items' outcomes with one statement: it updates
 * the staged rows of a row-staged chunk, and adds rows for a format-3
 * chunk's lines (callers pass those only for lines that did not apply).
 */
export async function writeOutcomes(trx: BulkTx, ref: ChunkRef, outcomes: ItemOutcomeRow[]): Promise<void> {
  if (outcomes.length === 0) return;
  await insertRows(
    trx,
    "bulk_job_items",
    outcomes.map((o) => ({
      merchant_id: ref.merchantId,
      job_id: ref.jobId,
      line_no: o.line_no,
      sku: o.sku,
      chunk_no: ref.chunkNo,
      outcome: o.outcome,
      errors: o.errors === null ? null : JSON.stringify(o.errors),
      product_version: o.product_version,
    })),
    { onDuplicateKeyUpdate: ["outcome", "errors", "product_version"] },
  );
}

/** failPendingItems marks a queued chunk's pending items FAILED with one reason, and returns how many there were. */
export async function failPendingItems(trx: BulkTx, ref: ChunkRef, chunk: ChunkItems, reason: string): Promise<number> {
  const errors = [{ field: "", code: "CHUNK_FAILED", message: reason.slice(0, 500) }];
  if (compact(chunk)) {
    const lines = await pendingLines(trx, ref, chunk);
    await writeOutcomes(
      trx,
      ref,
      lines.map((l) => ({ line_no: l.line_no, sku: l.sku, outcome: "failed", errors, product_version: null })),
    );
    return lines.length;
  }
  const result = await trx
    .updateTable("bulk_job_items")
    .set({ outcome: "failed", errors: JSON.stringify(errors) })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("line_no", ">=", chunk.first_line)
    .where("line_no", "<=", chunk.last_line)
    .where("outcome", "=", "pending")
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** The outcomes a format-3 chunk's lines without a row can have (see the module comment). */
const CHUNK_OUTCOMES: readonly ItemOutcome[] = ["pending", "applied", "rolled_back"];

/**
 * listItems reads one page of a job's items after afterLine, in line order,
 * optionally only those with the given outcomes: the bulk_job_items rows
 * merged with the lines of format-3 chunks that have none. A filter without
 * pending, applied or rolled-back items reads the rows alone.
 */
export async function listItems(
  db: BulkDb,
  ref: JobRef,
  outcomes: readonly ItemOutcome[] | undefined,
  afterLine: number,
  limit: number,
): Promise<ListedItem[]> {
  const rowsAfter = (after: number, upTo: number | undefined, n: number) => {
    let q = db
      .selectFrom("bulk_job_items")
      .select(["line_no", "sku", "outcome", "errors", "product_version"])
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .where("line_no", ">", after);
    if (upTo !== undefined) q = q.where("line_no", "<=", upTo);
    if (outcomes) q = q.where("outcome", "in", outcomes);
    return q.orderBy("line_no").limit(n).execute();
  };
  if (outcomes && !outcomes.some((o) => CHUNK_OUTCOMES.includes(o))) return rowsAfter(afterLine, undefined, limit);
  const page: ListedItem[] = [];
  let cursor = afterLine;
  while (page.length < limit) {
    const wanted = limit - page.length;
    const chunk = await db
      .selectFrom("bulk_job_chunks")
      .select(["format", "first_line", "last_line", "state", "items", "applied_versions"])
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .where("format", ">", ROW_FORMAT)
      .where("last_line", ">", cursor)
      .orderBy("chunk_no")
      .limit(1)
      .executeTakeFirst();
    const rows = await rowsAfter(cursor, chunk ? Number(chunk.last_line) : undefined, wanted);
    if (!chunk) {
      page.push(...rows);
      break;
    }
    const taken = await rowLines(db, ref, Math.max(Number(chunk.first_line), cursor + 1), Number(chunk.last_line));
    const versions = appliedVersions(chunk);
    const outcome: ItemOutcome = versions === null ? "pending" : chunk.state === "rolled_back" ? "rolled_back" : "applied";
    const derived: ListedItem[] = [];
    if (!outcomes || outcomes.includes(outcome)) {
      for (const [i, l] of decodeChunkItems(chunk.items!).entries()) {
        if (l.line_no <= cursor || taken.has(l.line_no)) continue;
        derived.push({ line_no: l.line_no, sku: l.sku, outcome, errors: null, product_version: versions?.[i] ?? null });
      }
    }
    // rows holds at most `wanted` rows: any row it left out lies after all of the first `wanted` merged.
    const merged = [...rows, ...derived].sort((a, b) => Number(a.line_no) - Number(b.line_no));
    page.push(...merged.slice(0, wanted));
    if (merged.length >= wanted) break;
    cursor = Number(chunk.last_line);
  }
  return page;
}

/** deleteItems removes a job's staged lines and outcomes (retention, or a discarded duplicate upload), batch rows per statement. */
export function deleteItems(db: BulkDb, ref: JobRef, batch: number): Promise<number> {
  return deleteInBatches(
    () =>
      db
        .deleteFrom("bulk_job_items")
        .where("merchant_id", "=", ref.merchantId)
        .where("job_id", "=", ref.jobId)
        .limit(batch)
        .executeTakeFirst(),
    batch,
  );
}
