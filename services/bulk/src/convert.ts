/** Mapping between bulk rows and the wire (stockroom.bulk.v1). */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  BulkFileFormat,
  BulkJobFailure,
  BulkItemOutcome,
  BulkJobSchema,
  BulkJobState,
  ConflictPolicy,
  type BulkJob,
  type BulkJobItem,
  BulkJobItemSchema,
  type BulkJobOptionsSchema,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { jsonColumn } from "@stockroom/common/db";
import type { ItemError } from "./parse/types.ts";
import { stagingStopped } from "./domain.ts";
import type { NewJob } from "./jobs.ts";
import type { BulkJobItemRow, BulkJobRow, BulkJobStateName, ItemOutcomeName } from "./store.ts";

export const STATE_TO_PROTO: Record<BulkJobStateName, BulkJobState> = {
  receiving: BulkJobState.RECEIVING,
  validating: BulkJobState.VALIDATING,
  queued: BulkJobState.QUEUED,
  running: BulkJobState.RUNNING,
  succeeded: BulkJobState.SUCCEEDED,
  partially_succeeded: BulkJobState.PARTIALLY_SUCCEEDED,
  failed: BulkJobState.FAILED,
  cancelled: BulkJobState.CANCELLED,
  rolling_back: BulkJobState.ROLLING_BACK,
  rolled_back: BulkJobState.ROLLED_BACK,
};

export const OUTCOME_TO_PROTO: Record<ItemOutcomeName, BulkItemOutcome> = {
  pending: BulkItemOutcome.PENDING,
  applied: BulkItemOutcome.APPLIED,
  unchanged: BulkItemOutcome.UNCHANGED,
  conflict: BulkItemOutcome.CONFLICT,
  invalid: BulkItemOutcome.INVALID,
  failed: BulkItemOutcome.FAILED,
  rolled_back: BulkItemOutcome.ROLLED_BACK,
};

/** reverse inverts a name → enum table, for filters given on the wire. */
export function reverse<K extends string>(table: Record<K, number>): Map<number, K> {
  return new Map(Object.entries(table).map(([k, v]) => [v as number, k as K]));
}

/** optionsToProto maps job options (of a job or of an upload) to the wire. */
export function optionsToProto(o: Omit<NewJob, "merchantId">): MessageInitShape<typeof BulkJobOptionsSchema> {
  return {
    format: o.format === "csv" ? BulkFileFormat.CSV : BulkFileFormat.JSON_LINES,
    requestId: o.requestId,
    conflictPolicy: o.conflictPolicy === "skip" ? ConflictPolicy.SKIP : ConflictPolicy.OVERWRITE,
    dryRun: o.dryRun,
    fileName: o.fileName,
  };
}

export function jobToProto(row: BulkJobRow): BulkJob {
  return create(BulkJobSchema, {
    id: row.job_id,
    options: optionsToProto({
      format: row.format,
      requestId: row.request_id ?? "",
      conflictPolicy: row.conflict_policy,
      dryRun: Boolean(row.dry_run),
      fileName: row.file_name,
    }),
    state: STATE_TO_PROTO[row.state],
    counts: {
      total: BigInt(row.total_items),
      valid: BigInt(row.valid_items),
      invalid: BigInt(row.invalid_items),
      applied: BigInt(row.applied_items),
      unchanged: BigInt(row.unchanged_items),
      conflict: BigInt(row.conflict_items),
      failed: BigInt(row.failed_items),
      rolledBack: BigInt(row.rolled_back_items),
    },
    chunkCount: row.chunk_count,
    chunksDone: row.chunks_done,
    fileSize: BigInt(row.file_size),
    contentSha256: row.content_sha256 ?? "",
    error: row.error,
    version: BigInt(row.version),
    createTime: timestampFromDate(row.created_at),
    updateTime: timestampFromDate(row.updated_at),
    endTime: row.ended_at ? timestampFromDate(row.ended_at) : undefined,
    createdBy: row.created_by ?? "",
    rollbackRequestedBy: row.rollback_by ?? "",
    failure:
      row.state !== "failed" ? BulkJobFailure.UNSPECIFIED : stagingStopped(row) ? BulkJobFailure.STAGING_STOPPED : BulkJobFailure.FILE,
  });
}

export function itemToProto(row: Pick<BulkJobItemRow, "line_no" | "sku" | "outcome" | "errors" | "product_version">): BulkJobItem {
  return create(BulkJobItemSchema, {
    lineNumber: BigInt(row.line_no),
    sku: row.sku,
    outcome: OUTCOME_TO_PROTO[row.outcome],
    errors: row.errors === null ? [] : jsonColumn<ItemError[]>(row.errors),
    productVersion: row.product_version === null ? 0n : BigInt(row.product_version),
  });
}
