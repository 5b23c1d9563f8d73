/**
 * Bulk job rules: the job state machine, item outcomes and how one file
 * line merges into the current product. Pure: imports neither proto nor
 * kysely, so the rules are tested without a database.
 */
import {
  diffFields,
  MASK_PATHS,
  NO_MERCHANDISING,
  sortedAttributes,
  validateCompareAt,
  validateFields,
  type Product,
} from "@stockroom/catalog";
import { type FieldViolation, newUlid } from "@stockroom/common";
import type { BulkItem, ItemError } from "./parse/types.ts";

export type JobState =
  | "receiving"
  | "validating"
  | "queued"
  | "running"
  | "succeeded"
  | "partially_succeeded"
  | "failed"
  | "cancelled"
  | "rolling_back"
  | "rolled_back";

/**
 * STAGING_STOPPED begins the error of a job that failed because its staging
 * stopped (the database failed under it, or its process went away), not
 * because of its file: its request_id is released and its file may be
 * staged again (stagingStopped). The API answers such a job with failure
 * BULK_JOB_FAILURE_STAGING_STOPPED, any other failed one with
 * BULK_JOB_FAILURE_FILE (convert.ts).
 */
export const STAGING_STOPPED = "staging stopped: ";

/** stagingStopped tells whether a job failed because its staging stopped, not because of its file. */
export function stagingStopped(job: { state: JobState; error: string }): boolean {
  return job.state === "failed" && job.error.startsWith(STAGING_STOPPED);
}

export type ItemOutcome = "pending" | "applied" | "unchanged" | "conflict" | "invalid" | "failed" | "rolled_back";

/** ConflictPolicy decides an item (or a rollback) whose product changed since the job read (or applied) it. */
export type ConflictPolicy = "overwrite" | "skip";

/** ChunkRef names one chunk of one merchant's job. */
export interface ChunkRef {
  merchantId: string;
  jobId: string;
  chunkNo: number;
}

/** JobRef names one merchant's job. */
export type JobRef = Omit<ChunkRef, "chunkNo">;

/**
 * NEXT_STATES is the job state machine: the states each state may move to.
 * Staging takes a job from RECEIVING through VALIDATING to QUEUED (or
 * straight to its end: a dry run, a file with no valid item, a file that
 * cannot be read); its chunks take it through RUNNING to its end; a finished
 * job may be rolled back.
 */
export const NEXT_STATES: Readonly<Record<JobState, readonly JobState[]>> = {
  receiving: ["validating", "failed", "cancelled"],
  validating: ["queued", "succeeded", "partially_succeeded", "failed", "cancelled"],
  queued: ["running", "succeeded", "partially_succeeded", "cancelled"],
  running: ["succeeded", "partially_succeeded", "cancelled"],
  succeeded: ["rolling_back"],
  partially_succeeded: ["rolling_back"],
  failed: ["rolling_back"],
  cancelled: ["rolling_back"],
  rolling_back: ["rolled_back"],
  rolled_back: [],
};

/** FINAL_STATES end a job's processing (a rollback may still follow). */
export const FINAL_STATES: ReadonlySet<JobState> = new Set(["succeeded", "partially_succeeded", "failed", "cancelled", "rolled_back"]);

/** WORKING_STATES are those in which a job has chunks for the workers (apply or rollback). */
export const WORKING_STATES: readonly JobState[] = ["queued", "running", "rolling_back"];

/** statesInto lists the states from which a job may move to `to`. */
export function statesInto(to: JobState): JobState[] {
  return (Object.keys(NEXT_STATES) as JobState[]).filter((from) => NEXT_STATES[from].includes(to));
}

/** canMove tells whether the state machine allows from → to. */
export function canMove(from: JobState, to: JobState): boolean {
  return NEXT_STATES[from].includes(to);
}

/** outcomeState is the final state of a job whose items all have an outcome. */
export function outcomeState(counts: { invalid: number; conflict: number; failed: number }): "succeeded" | "partially_succeeded" {
  return counts.invalid + counts.conflict + counts.failed > 0 ? "partially_succeeded" : "succeeded";
}

/** StagedItem is what a file line names, converted; absent fields are left alone. */
export type StagedItem = BulkItem;

/**
 * Chunk formats: what a staged chunk's items may hold and where they are
 * kept. A worker applies only the formats it knows (up to its newest), and
 * leaves a newer one for a newer worker, so during a rolling deploy an old
 * worker never applies an item whose fields it would drop, or misses items
 * kept where it does not look. Format 1: sku, title, description, price,
 * currency, stock, status, attributes, one bulk_job_items row per line.
 * Format 2 (2026-12) adds gtin, brand, compare_at_price and weight_grams.
 * Formats 1 and 2 are staged in the oldest one that holds a chunk's items,
 * so old workers keep applying files that use none of the new fields.
 * Format 3 (compact, 2026-12) holds every field, and keeps a chunk's items
 * in its ledger row: bulk_job_items then has rows only for the lines that
 * did not apply (items.ts), a thousandth of the rows for a clean file.
 */
export const CHUNK_FORMAT = 3;

/** ROW_FORMAT is the newest format that stages a bulk_job_items row per line (what BULK_CHUNK_FORMAT=2 keeps during a roll). */
export const ROW_FORMAT = 2;

/** FORMAT_2_FIELDS are the item fields format 2 added, with their file columns. */
const FORMAT_2_FIELDS = { gtin: "gtin", brand: "brand", compareAtMinor: "compare_at_price", weightGrams: "weight_grams" } as const;

/** format2Columns lists the file columns of format 2 an item names (none: format 1 holds it). */
export function format2Columns(item: StagedItem): string[] {
  return Object.entries(FORMAT_2_FIELDS)
    .filter(([field]) => item[field as keyof typeof FORMAT_2_FIELDS] !== undefined)
    .map(([, column]) => column);
}

/** itemFormat is the oldest row-staged chunk format (1 or 2) that can hold the item. */
export function itemFormat(item: StagedItem): number {
  return format2Columns(item).length > 0 ? 2 : 1;
}

/** Merge is the fate of one item against the current product. */
export type Merge =
  | { outcome: "applied"; before: Product | undefined; next: Omit<Product, "version" | "createdAt" | "updatedAt">; changed: string[] }
  | { outcome: "unchanged"; version: number }
  | { outcome: "conflict"; version: number | null }
  | { outcome: "invalid"; errors: ItemError[] };

/**
 * mergeItem decides one item's fate against the current product (locked by
 * the caller) and the version it had when the job staged the item: the
 * conflict policy, the fields a new product needs, the merged fields (an
 * empty attribute value removes the key) and whether anything changed.
 * Versions and change times are the product-write port's business.
 */
export function mergeItem(
  current: Product | undefined,
  item: StagedItem,
  stagedVersion: number | null,
  policy: ConflictPolicy,
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
  const base = current ?? {
    id: newUlid(now.getTime()),
    sku: item.sku,
    title: "",
    description: "",
    priceMinor: 0,
    currency: "",
    stock: 0,
    status: "active" as const,
    attributes: {},
    ...NO_MERCHANDISING,
  };
  const next = {
    id: base.id,
    sku: base.sku,
    title: item.title ?? base.title,
    description: item.description ?? base.description,
    priceMinor: item.priceMinor ?? base.priceMinor,
    currency: item.currency ?? base.currency,
    stock: item.stock ?? base.stock,
    status: item.status ?? base.status,
    attributes: { ...base.attributes },
    gtin: item.gtin ?? base.gtin,
    brand: item.brand ?? base.brand,
    compareAtMinor: item.compareAtMinor !== undefined ? item.compareAtMinor : base.compareAtMinor,
    weightGrams: item.weightGrams !== undefined ? item.weightGrams : base.weightGrams,
  };
  for (const [key, value] of Object.entries(item.attributes ?? {})) {
    if (value === "") delete next.attributes[key];
    else next.attributes[key] = value;
  }
  next.attributes = sortedAttributes(next.attributes);
  const violations: FieldViolation[] = [];
  validateFields("product", { attributes: next.attributes }, violations);
  if (violations.length > 0) {
    return {
      outcome: "invalid",
      errors: violations.map((v) => ({ field: "attributes", code: "TOO_MANY_ATTRIBUTES", message: v.description })),
    };
  }
  // A compare-at price a line sets is in the line's currency (the parser needs one); one it keeps is in the product's.
  validateCompareAt("compare_at_price", current, next, item.compareAtMinor != null ? item.currency : undefined, violations);
  if (violations.length > 0) {
    return {
      outcome: "invalid",
      errors: violations.map((v) => ({
        field: "compare_at_price",
        code: "CURRENCY_MISMATCH",
        message: `compare_at_price ${v.description}`,
      })),
    };
  }
  if (!current) return { outcome: "applied", before: undefined, next, changed: [...MASK_PATHS] };
  const changed = diffFields(current, { ...current, ...next });
  if (changed.length === 0) return { outcome: "unchanged", version: current.version };
  return { outcome: "applied", before: current, next, changed };
}
