/** BulkJobService calls that change jobs: files streamed in one call or in resumable parts, and rollback. */
import type { ServiceImpl } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  BulkFileFormat,
  ConflictPolicy,
  UploadSchema,
  type BulkJobOptions,
  type Upload,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { BulkJobService, UploadBulkFileRequest } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { principalOf } from "@stockroom/common/rpc";
import { InvalidArgumentError, RequestIdMismatchError, type FieldViolation, longerThan } from "@stockroom/common";
import { jobToProto, optionsToProto } from "./convert.ts";
import { ingest, readWholeFile, type IngestDeps } from "./ingest.ts";
import { stagingStopped } from "./domain.ts";
import { findJob, isStaging } from "./jobs.ts";
import type { BulkJobRow, BulkUploadRow } from "./store.ts";
import {
  appendPart,
  createUpload,
  deleteUpload,
  findUpload,
  linkUploadJob,
  MAX_PART_BYTES,
  readUpload,
  uploadOptions,
  type UploadOptions,
} from "./uploads.ts";

type UploadMethods = "uploadBulkFile" | "createUpload" | "getUpload" | "appendUploadPart" | "completeUpload";

export interface BulkUploadDeps extends IngestDeps {
  /** How long an unfinished resumable upload is kept. */
  uploadTtlMs: number;
}

export function createBulkUploadMethods(deps: BulkUploadDeps): Pick<ServiceImpl<typeof BulkJobService>, UploadMethods> {
  const { db } = deps;
  return {
    async uploadBulkFile(requests, ctx) {
      const { merchantId, actor } = principalOf(ctx);
      const it = requests[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || first.value.payload.case !== "options") {
        throw new InvalidArgumentError([{ field: "options", description: "the first message must carry the job options" }]);
      }
      const options = { ...parseOptions("options", first.value.payload.value), actor };
      async function* bytes(): AsyncIterable<Uint8Array> {
        for (let r = await it.next(); !r.done; r = await it.next()) {
          const m: UploadBulkFileRequest = r.value;
          if (m.payload.case !== "chunk") {
            throw new InvalidArgumentError([{ field: "options", description: "only the first message may carry options" }]);
          }
          if (m.payload.value.length > MAX_PART_BYTES) {
            throw new InvalidArgumentError([
              { field: "chunk", description: `must be at most ${MAX_PART_BYTES} bytes (4 MiB) per message` },
            ]);
          }
          yield m.payload.value;
        }
      }
      return { job: jobToProto(await ingest(deps, merchantId, options, bytes())) };
    },

    async createUpload(req, ctx) {
      const merchantId = principalOf(ctx).merchantId;
      const options = parseOptions("options", req.options);
      const expected = Number(req.expectedSize);
      if (expected < 0 || expected > deps.limits.maxBytes) {
        throw new InvalidArgumentError([{ field: "expected_size", description: `must be 0 (unknown) to ${deps.limits.maxBytes} bytes` }]);
      }
      const row = await createUpload(db, merchantId, options, expected > 0 ? expected : null, deps.uploadTtlMs);
      return { upload: uploadToProto(row) };
    },

    async getUpload(req, ctx) {
      return { upload: uploadToProto(await findUpload(db, principalOf(ctx).merchantId, req.uploadId)) };
    },

    async appendUploadPart(req, ctx) {
      const merchantId = principalOf(ctx).merchantId;
      if (Number(req.offset) + req.data.length > deps.limits.maxBytes) {
        throw new InvalidArgumentError([{ field: "data", description: `the file may be at most ${deps.limits.maxBytes} bytes` }]);
      }
      const committed = await appendPart(db, merchantId, req.uploadId, Number(req.offset), req.data);
      return { committedSize: BigInt(committed) };
    },

    async completeUpload(req, ctx) {
      // The job is the completing caller's (actor), whoever created the upload.
      const { merchantId, actor } = principalOf(ctx);
      const upload = await findUpload(db, merchantId, req.uploadId);
      const bound = upload.job_id === null ? undefined : await findJob(db, merchantId, upload.job_id);
      // A job whose staging stopped (the database lost, a restart) did not take the file: the stored parts are staged anew.
      if (bound && !stagingStopped(bound)) return { job: jobToProto(bound) };
      const violations: FieldViolation[] = [];
      if (Number(req.totalSize) !== Number(upload.committed_size)) {
        violations.push({ field: "total_size", description: `is ${req.totalSize} but ${upload.committed_size} bytes were received` });
      }
      if (req.contentSha256 !== "" && !/^[0-9a-f]{64}$/.test(req.contentSha256)) {
        violations.push({ field: "content_sha256", description: "must be 64 lower-case hex digits" });
      }
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      // One pass over the stored bytes: the hash checks the client's and binds the job, the bound on items lets
      // ingest apply chunks while the rest is staged (ingest.ts).
      const options = { ...uploadOptions(upload), actor };
      const whole = await readWholeFile(readUpload(db, merchantId, req.uploadId), options.format);
      if (req.contentSha256 !== "" && whole.sha256 !== req.contentSha256) {
        throw new InvalidArgumentError([{ field: "content_sha256", description: "does not match the bytes received" }]);
      }
      let job: BulkJobRow;
      try {
        job = await ingest(deps, merchantId, options, readUpload(db, merchantId, req.uploadId), whole);
      } catch (error) {
        // The request_id is bound to another file or other options: nothing of this upload is kept.
        if (error instanceof RequestIdMismatchError) await deleteUpload(db, merchantId, req.uploadId);
        throw error;
      }
      // A job still being staged (a duplicate found mid-staging) is answered but not bound: the next completion
      // finds it again, or stages the file anew if that staging stops.
      if (!isStaging(job)) await linkUploadJob(db, merchantId, req.uploadId, job.job_id);
      return { job: jobToProto(job) };
    },
  };
}

/** parseOptions validates job options from the wire. */
function parseOptions(field: string, o: BulkJobOptions | undefined): UploadOptions {
  const violations: FieldViolation[] = [];
  if (!o) throw new InvalidArgumentError([{ field, description: "is required" }]);
  const format = o.format === BulkFileFormat.CSV ? "csv" : o.format === BulkFileFormat.JSON_LINES ? "jsonl" : undefined;
  if (!format) violations.push({ field: `${field}.format`, description: "must be CSV or JSON_LINES" });
  const policy =
    o.conflictPolicy === ConflictPolicy.SKIP
      ? "skip"
      : o.conflictPolicy === ConflictPolicy.OVERWRITE || o.conflictPolicy === ConflictPolicy.UNSPECIFIED
        ? "overwrite"
        : undefined;
  if (!policy) violations.push({ field: `${field}.conflict_policy`, description: `unknown policy ${o.conflictPolicy}` });
  if (o.requestId.length > 128) violations.push({ field: `${field}.request_id`, description: "must be at most 128 characters" });
  if (longerThan(o.fileName, 255)) violations.push({ field: `${field}.file_name`, description: "must be at most 255 characters" });
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return { format: format!, conflictPolicy: policy!, dryRun: o.dryRun, requestId: o.requestId, fileName: o.fileName };
}

function uploadToProto(row: BulkUploadRow): Upload {
  return create(UploadSchema, {
    id: row.upload_id,
    options: optionsToProto(uploadOptions(row)),
    committedSize: BigInt(row.committed_size),
    expireTime: timestampFromDate(row.expires_at),
    jobId: row.job_id ?? "",
    expectedSize: BigInt(row.expected_size ?? 0),
  });
}
