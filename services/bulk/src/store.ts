import path from "node:path";
import type { Kysely, Transaction } from "kysely";
import type { CatalogTables } from "@stockroom/catalog";
import type { MigrationSet } from "@stockroom/common/db";
import type { ConflictPolicy, ItemOutcome, JobState } from "./domain.ts";

/** bulkMigrations is the folder of the bulk job tables (staging, chunk ledger, uploads). */
export const bulkMigrations: MigrationSet = {
  name: "bulk",
  folder: path.join(import.meta.dirname, "..", "migrations"),
};

/** BulkJobStateName is a job's state (domain.ts has the state machine). */
export type BulkJobStateName = JobState;
/** ItemOutcomeName is an item's outcome. */
export type ItemOutcomeName = ItemOutcome;

export interface BulkJobRow {
  merchant_id: string;
  job_id: string;
  request_id: string | null;
  content_sha256: string | null;
  format: "csv" | "jsonl";
  conflict_policy: ConflictPolicy;
  /** Set when a rollback is requested. */
  rollback_policy: ConflictPolicy | null;
  dry_run: boolean;
  file_name: string;
  file_size: number;
  state: BulkJobStateName;
  total_items: number;
  valid_items: number;
  invalid_items: number;
  applied_items: number;
  unchanged_items: number;
  conflict_items: number;
  failed_items: number;
  rolled_back_items: number;
  chunk_count: number;
  chunks_done: number;
  error: string;
  version: number;
  created_at: Date;
  updated_at: Date;
  ended_at: Date | null;
  /** When the process staging the job last said it still was (ingest's heartbeat); NULL before 2026-12-05. */
  staging_heartbeat_at: Date | null;
  /** When the pruner removed the job's per-item details (staging rows, outcomes). */
  items_pruned_at: Date | null;
  /** W3C trace context of the call that created the job (trace-context.ts): its chunks join that trace. */
  trace_context: string | null;
  /** Who created the job, as the audit trail names callers ("api_key:<key id>"): the actor of its product changes. NULL before 2026-12-05. */
  created_by: string | null;
  /** Who asked for the job's rollback: the actor of the rollback's product changes. */
  rollback_by: string | null;
}

export interface BulkJobItemRow {
  merchant_id: string;
  job_id: string;
  line_no: number;
  sku: string;
  chunk_no: number | null;
  /** The fields the line names (a parse BulkItem), as JSON. */
  payload: unknown;
  staged_version: number | null;
  outcome: ItemOutcomeName;
  /** The line's ItemErrors, as JSON. */
  errors: unknown;
  product_version: number | null;
}

export interface BulkJobChunkRow {
  merchant_id: string;
  job_id: string;
  chunk_no: number;
  first_line: number;
  last_line: number;
  item_count: number;
  /** The chunk format of its staged items (domain.ts CHUNK_FORMAT); 1 for chunks staged before formats existed. */
  format: number;
  /** queued → applied (or failed / cancelled); a rollback moves applied → rollback_queued → rolled_back. */
  state: "queued" | "applied" | "failed" | "cancelled" | "rollback_queued" | "rolled_back";
  attempt: number;
  published_at: Date | null;
  applied_at: Date | null;
  error: string;
  /** Format 3: the chunk's staged lines, deflated JSON (items.ts encodeChunkItems); NULL for formats 1 and 2. */
  items: Buffer | null;
  /** Format 3, once applied: each staged line's product version when it applied, else null (JSON array in items order). */
  applied_versions: unknown;
}

export interface BulkUploadRow {
  merchant_id: string;
  upload_id: string;
  options: unknown;
  expected_size: number | null;
  committed_size: number;
  job_id: string | null;
  created_at: Date;
  expires_at: Date;
}

export interface BulkUploadPartRow {
  merchant_id: string;
  upload_id: string;
  byte_offset: number;
  data: Buffer;
}

/** BulkTables are the bulk service's own tables, all keyed by merchant_id first. */
export interface BulkTables {
  bulk_jobs: BulkJobRow;
  bulk_job_items: BulkJobItemRow;
  bulk_job_chunks: BulkJobChunkRow;
  bulk_uploads: BulkUploadRow;
  bulk_upload_parts: BulkUploadPartRow;
}

/** BulkDb is the database the bulk package works on: its own tables and the catalog's (products, audit, outbox). */
export type BulkDb = Kysely<CatalogTables & BulkTables>;
export type BulkTx = Transaction<CatalogTables & BulkTables>;
