/**
 * Ingest: an uploaded byte stream becomes a staged, queued job. The bytes are
 * hashed and counted as they pass, parsed and validated line by line, and
 * staged in batches, so memory stays bounded whatever the file size. The same
 * request_id, or the same merchant uploading the same content with the same
 * options within the dedupe window, returns the existing job.
 */
import { createHash } from "node:crypto";
import { trace } from "@opentelemetry/api";
import type { Metrics } from "@stockroom/common/observe";
import type { NatsDeps } from "@stockroom/common/nats";
import { inTransaction } from "@stockroom/common/db";
import { cancelChunks, deleteChunks } from "./chunks.ts";
import { deleteItems } from "./items.ts";
import { bulkMetrics } from "./metrics.ts";
import { createJob, deleteJobRow, findDuplicateJob, findJob, moveJob, setJobFile } from "./jobs.ts";
import { BulkFileError, parseBulkFile } from "./parse/index.ts";
import { topUp, type QueueConfig } from "./queue.ts";
import { finishStaging, stageLines, type StageResult } from "./stage.ts";
import type { BulkDb, BulkJobRow } from "./store.ts";
import type { UploadOptions } from "./uploads.ts";

export interface IngestLimits {
  maxBytes: number;
  maxItems: number;
  chunkSize: number;
  /** Same content + options within this window returns the existing job. */
  dedupeWindowMs: number;
}

export const DEFAULT_LIMITS: IngestLimits = {
  maxBytes: 512 * 1024 * 1024,
  maxItems: 500_000,
  chunkSize: 1000,
  dedupeWindowMs: 24 * 60 * 60 * 1000,
};

export interface IngestDeps {
  db: BulkDb;
  /** Without NATS the chunks wait in the ledger; a worker's reconciler publishes them. */
  nats?: NatsDeps;
  queue: QueueConfig;
  limits: IngestLimits;
  /** Lines invalid at staging are counted here (chunks count the rest, in the workers). */
  metrics?: Metrics;
}

/** ingest stages a file as a job and queues its first chunks; see the module comment. */
export async function ingest(
  deps: IngestDeps,
  merchantId: string,
  options: UploadOptions,
  source: AsyncIterable<Uint8Array>,
): Promise<BulkJobRow> {
  const { db, limits } = deps;
  const { jobId, existing } = await createJob(db, { merchantId, ...options });
  trace.getActiveSpan()?.setAttributes({ "stockroom.bulk.job_id": jobId, "stockroom.bulk.existing": existing });
  if (existing) return (await findJob(db, merchantId, jobId))!;
  const ref = { merchantId, jobId };
  const hash = createHash("sha256");
  let size = 0;
  async function* counted() {
    for await (const chunk of source) {
      size += chunk.length;
      hash.update(chunk);
      yield chunk;
    }
  }
  let staged: StageResult;
  try {
    staged = await stageLines(
      db,
      ref,
      parseBulkFile(counted(), { format: options.format, maxBytes: limits.maxBytes, maxItems: limits.maxItems }),
      { chunkSize: limits.chunkSize, stagedVersions: options.conflictPolicy === "skip" },
    );
  } catch (error) {
    const reason = error instanceof BulkFileError ? `${error.code}: ${error.message}` : `upload interrupted: ${(error as Error).message}`;
    await failJob(db, ref, reason.slice(0, 1000), size);
    if (error instanceof BulkFileError) return (await findJob(db, merchantId, jobId))!;
    throw error;
  }
  const sha = hash.digest("hex");
  const duplicate = await findDuplicateJob(
    db,
    ref,
    { contentSha256: sha, format: options.format, conflictPolicy: options.conflictPolicy, dryRun: options.dryRun },
    limits.dedupeWindowMs,
  );
  if (duplicate) {
    await discardJob(db, ref);
    return duplicate;
  }
  await setJobFile(db, ref, { fileSize: size, contentSha256: sha });
  await finishStaging(db, ref, staged, options.dryRun);
  if (deps.metrics) bulkMetrics(deps.metrics.registry).items.inc({ outcome: "invalid" }, staged.invalid);
  trace.getActiveSpan()?.setAttributes({
    "stockroom.bulk.items": staged.total,
    "stockroom.bulk.items.invalid": staged.invalid,
    "stockroom.bulk.chunks": staged.chunks,
  });
  if (deps.nats && !options.dryRun) await topUp(db, deps.nats, deps.queue, ref);
  return (await findJob(db, merchantId, jobId))!;
}

/** failJob ends a job whose file could not be read; nothing of it is ever applied. */
async function failJob(db: BulkDb, ref: { merchantId: string; jobId: string }, error: string, size: number) {
  const now = new Date();
  await inTransaction(db, async (trx) => {
    await moveJob(trx, ref, "failed", now, { error, file_size: size });
    await cancelChunks(trx, ref);
  });
}

/** discardJob removes a job that turned out to duplicate an earlier one (nothing of it was queued). */
async function discardJob(db: BulkDb, ref: { merchantId: string; jobId: string }) {
  await deleteItems(db, ref, 5_000);
  await deleteChunks(db, ref, 5_000);
  await deleteJobRow(db, ref);
}
