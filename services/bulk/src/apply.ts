/**
 * Applying one chunk of a bulk job: ONE transaction that locks the chunk's
 * ledger row and its products, upserts the changed products, writes their
 * audit entries and outbox events, records each item's outcome, marks the
 * chunk applied and advances the job's counters. A redelivered chunk finds
 * its ledger row already applied and changes nothing.
 */
import { sql, type Kysely, type Transaction } from "kysely";
import { inTransaction, insertRows, jsonColumn } from "@stockroom/common/db.ts";
import type { FieldViolation } from "@stockroom/common/errors.ts";
import { newUlid } from "@stockroom/common/ulid.ts";
import { changeTime, diffFields, sortedAttributes, validateFields, type Product } from "@stockroom/catalog/domain.ts";
import { recordChanges, type ProductChangeRecord } from "@stockroom/catalog/events.ts";
import { findProducts, insertProducts, upsertProducts, type CatalogTables } from "@stockroom/catalog/store.ts";
import type { BulkItem as StagedItem, ItemError } from "./parse/types.ts";
import { recordJobFinished } from "./events.ts";
import type { BulkJobRow, BulkTables, ItemOutcomeName } from "./store.ts";

/** StagedItem is what a file line names, converted; absent fields are left alone. */
export type { BulkItem as StagedItem, ItemError } from "./parse/types.ts";

export type BulkDb = Kysely<CatalogTables & BulkTables>;
export type BulkTx = Transaction<CatalogTables & BulkTables>;

export interface ChunkRef {
  merchantId: string;
  jobId: string;
  chunkNo: number;
}

export interface ChunkOutcome {
  /** The chunk was already applied, failed or cancelled: nothing was done. */
  noop: boolean;
  counts: Record<"applied" | "unchanged" | "conflict" | "invalid", number>;
  /** The job's state after this chunk. */
  jobState?: BulkJobRow["state"];
  /** Items failChunk marked FAILED. */
  failed?: number;
}

/** Item outcome of the merge of one item into the current product. */
type Merge =
  | { outcome: "applied"; next: Product; changed: string[]; before: Product | undefined }
  | { outcome: "unchanged"; version: number }
  | { outcome: "conflict"; version: number | null }
  | { outcome: "invalid"; errors: ItemError[] };

/**
 * mergeItem decides one item's fate against the current product (locked by
 * the caller) and the version it had when the job staged the item.
 */
export function mergeItem(
  current: Product | undefined,
  item: StagedItem,
  stagedVersion: number | null,
  policy: BulkJobRow["conflict_policy"],
  now: Date,
): Merge {
  if (policy === "skip" && (current?.version ?? null) !== stagedVersion) {
    return { outcome: "conflict", version: current?.version ?? null };
  }
  if (!current) {
    const missing = (["title", "priceMinor", "currency"] as const).filter((f) => item[f] === undefined);
    if (missing.length > 0) {
      const names = missing.map((f) => (f === "priceMinor" ? "price" : f));
      return {
        outcome: "invalid",
        errors: [{ field: names[0]!, code: "MISSING_FOR_CREATE", message: `a new product needs ${names.join(", ")}` }],
      };
    }
  }
  const base: Product = current ?? {
    id: newUlid(now.getTime()),
    sku: item.sku,
    title: "",
    description: "",
    priceMinor: 0,
    currency: "",
    stock: 0,
    status: "active",
    attributes: {},
    version: 0,
    createdAt: now,
    updatedAt: now,
  };
  const next: Product = { ...base, attributes: { ...base.attributes } };
  if (item.title !== undefined) next.title = item.title;
  if (item.description !== undefined) next.description = item.description;
  if (item.priceMinor !== undefined) next.priceMinor = item.priceMinor;
  if (item.currency !== undefined) next.currency = item.currency;
  if (item.stock !== undefined) next.stock = item.stock;
  if (item.status !== undefined) next.status = item.status;
  for (const [key, value] of Object.entries(item.attributes ?? {})) {
    if (value === "") delete next.attributes[key];
    else next.attributes[key] = value;
  }
  next.attributes = sortedAttributes(next.attributes);
  const violations: FieldViolation[] = [];
  validateFields("product", { attributes: next.attributes }, violations);
  if (violations.length > 0) {
    return { outcome: "invalid", errors: violations.map((v) => ({ field: "attributes", code: "TOO_MANY_ATTRIBUTES", message: v.description })) };
  }
  const changed = current ? diffFields(current, next) : ["title", "description", "price", "stock", "status", "attributes"];
  if (current && changed.length === 0) return { outcome: "unchanged", version: current.version };
  next.version = base.version + 1;
  next.updatedAt = now;
  return { outcome: "applied", next, changed, before: current };
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
export async function applyChunk(db: BulkDb, ref: ChunkRef, now = new Date()): Promise<ChunkOutcome> {
  return inTransaction(db, async (trx) => {
    const counts = { applied: 0, unchanged: 0, conflict: 0, invalid: 0 };
    const chunk = await lockChunk(trx, ref);
    if (!chunk || chunk.state !== "queued") return { noop: true, counts };
    const job = await trx
      .selectFrom("bulk_jobs")
      .select(["state", "conflict_policy", "dry_run"])
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .executeTakeFirstOrThrow();
    if (job.state === "cancelled" || job.dry_run) {
      await setChunkState(trx, ref, "cancelled", now);
      return { noop: true, counts, jobState: job.state };
    }

    const items = await trx
      .selectFrom("bulk_job_items")
      .select(["line_no", "sku", "payload", "staged_version"])
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .where("line_no", ">=", chunk.first_line)
      .where("line_no", "<=", chunk.last_line)
      .where("outcome", "=", "pending")
      .orderBy("line_no")
      .execute();
    const current = new Map(
      (await findProducts(trx, ref.merchantId, [...new Set(items.map((i) => i.sku))], true)).map((p) => [p.sku, p]),
    );

    const writes: Product[] = [];
    const changes: ProductChangeRecord[] = [];
    const outcomes: ItemOutcomeRow[] = [];
    for (const item of items) {
      const before = current.get(item.sku);
      // Never stamp a change before the product's previous one (event ids follow it; see changeTime).
      const at = before ? changeTime(before, now) : now;
      const merge = mergeItem(before, jsonColumn<StagedItem>(item.payload), item.staged_version === null ? null : Number(item.staged_version), job.conflict_policy, at);
      counts[merge.outcome]++;
      switch (merge.outcome) {
        case "applied":
          current.set(item.sku, merge.next); // a later line of the same SKU (not possible after validation) would see it
          writes.push(merge.next);
          changes.push({ type: merge.before ? "updated" : "created", before: merge.before, product: merge.next, changedFields: merge.changed, at });
          outcomes.push({ line_no: item.line_no, sku: item.sku, outcome: "applied", errors: null, product_version: merge.next.version });
          break;
        case "unchanged":
          outcomes.push({ line_no: item.line_no, sku: item.sku, outcome: "unchanged", errors: null, product_version: merge.version });
          break;
        case "conflict":
          outcomes.push({
            line_no: item.line_no,
            sku: item.sku,
            outcome: "conflict",
            errors: [{ field: "", code: "CHANGED_SINCE_STAGED", message: "the product changed after the job read it; kept the newer edit" }],
            product_version: merge.version,
          });
          break;
        case "invalid":
          outcomes.push({ line_no: item.line_no, sku: item.sku, outcome: "invalid", errors: merge.errors, product_version: null });
          break;
      }
    }

    await insertProducts(trx, ref.merchantId, writes.filter((p) => p.version === 1));
    await upsertProducts(trx, ref.merchantId, writes.filter((p) => p.version > 1));
    await recordChanges(trx, { merchantId: ref.merchantId, actor: `bulk_job:${ref.jobId}`, sourceKind: "bulk_job", sourceRef: ref.jobId }, changes);
    await writeOutcomes(trx, ref, outcomes);
    await setChunkState(trx, ref, "applied", now);
    const jobState = await advanceJob(trx, ref, counts, now);
    return { noop: false, counts, jobState };
  }, { isolation: "read committed" });
}

/** ItemOutcomeRow is the outcome a chunk transaction records for one line. */
export interface ItemOutcomeRow {
  line_no: number;
  sku: string;
  outcome: ItemOutcomeName;
  errors: ItemError[] | null;
  product_version: number | null;
}

/** writeOutcomes records many items' outcomes with one statement (the staged rows exist; this updates them). */
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
      outcome: o.outcome,
      errors: o.errors === null ? null : JSON.stringify(o.errors),
      product_version: o.product_version,
    })),
    { onDuplicateKeyUpdate: ["outcome", "errors", "product_version"] },
  );
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

async function setChunkState(trx: BulkTx, ref: ChunkRef, state: "applied" | "cancelled" | "failed", now: Date, error = ""): Promise<void> {
  await trx
    .updateTable("bulk_job_chunks")
    .set({ state, applied_at: now, error })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("chunk_no", "=", ref.chunkNo)
    .execute();
}

/**
 * advanceJob adds a finished chunk's counts to its job (relative updates, so
 * the job row is locked only from here to commit, and chunks of one job apply
 * in parallel) and, after the last chunk, moves the job to its final state.
 */
async function advanceJob(
  trx: BulkTx,
  ref: ChunkRef,
  counts: { applied: number; unchanged: number; conflict: number; invalid: number; failed?: number },
  now: Date,
): Promise<BulkJobRow["state"]> {
  await trx
    .updateTable("bulk_jobs")
    .set((eb) => ({
      applied_items: eb("applied_items", "+", counts.applied),
      unchanged_items: eb("unchanged_items", "+", counts.unchanged),
      conflict_items: eb("conflict_items", "+", counts.conflict),
      invalid_items: eb("invalid_items", "+", counts.invalid),
      failed_items: eb("failed_items", "+", counts.failed ?? 0),
      chunks_done: eb("chunks_done", "+", 1),
      version: eb("version", "+", 1),
      updated_at: now,
    }))
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .execute();
  const job = await trx
    .selectFrom("bulk_jobs")
    .select(["state", "chunks_done", "chunk_count", "invalid_items", "conflict_items", "failed_items"])
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .executeTakeFirstOrThrow();
  let state = job.state;
  if (job.chunks_done >= job.chunk_count && (state === "queued" || state === "running")) {
    state = Number(job.invalid_items) + Number(job.conflict_items) + Number(job.failed_items) > 0 ? "partially_succeeded" : "succeeded";
  } else if (state === "queued") {
    state = "running";
  }
  if (state !== job.state) {
    await trx
      .updateTable("bulk_jobs")
      .set({ state, ended_at: state === "running" ? null : now })
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .execute();
    if (state !== "running") await recordJobFinished(trx, ref, now);
  }
  return state;
}

/**
 * failChunk gives up on a poison chunk (it failed every delivery): its
 * pending items become FAILED with the reason, and the job moves on.
 */
export async function failChunk(db: BulkDb, ref: ChunkRef, reason: string, now = new Date()): Promise<ChunkOutcome> {
  return inTransaction(db, async (trx) => {
    const counts = { applied: 0, unchanged: 0, conflict: 0, invalid: 0 };
    const chunk = await lockChunk(trx, ref);
    if (!chunk || chunk.state !== "queued") return { noop: true, counts };
    const errors = JSON.stringify([{ field: "", code: "CHUNK_FAILED", message: reason.slice(0, 500) }]);
    const result = await trx
      .updateTable("bulk_job_items")
      .set({ outcome: "failed", errors })
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .where("line_no", ">=", chunk.first_line)
      .where("line_no", "<=", chunk.last_line)
      .where("outcome", "=", "pending")
      .executeTakeFirst();
    await setChunkState(trx, ref, "failed", now, reason.slice(0, 1000));
    const failed = Number(result.numUpdatedRows);
    const jobState = await advanceJob(trx, ref, { ...counts, failed }, now);
    return { noop: false, counts, jobState, failed };
  });
}
