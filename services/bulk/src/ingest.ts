/**
 * Ingest: an uploaded byte stream becomes a staged, queued job. The bytes are
 * hashed and counted as they pass, parsed and validated line by line, and
 * staged in batches, so memory stays bounded whatever the file size.
 *
 * Request ids (AIP-155): a job is bound to its request_id only once every
 * byte of its file was read, together with the file's SHA-256. A stream that
 * breaks off before its end therefore binds nothing: its half-staged job is
 * discarded (no FAILED job is left in the merchant's list) and the same
 * request_id may be sent again. A request_id already bound answers with its
 * job when the options and the content are the same, and INVALID_ARGUMENT
 * REQUEST_ID_MISMATCH when they differ; either way nothing of the new file
 * is kept. Without a request_id, the same merchant uploading the same
 * content with the same options within the dedupe window gets the existing
 * job.
 *
 * Applying overlaps staging when the whole file is at hand before staging
 * starts (a completed resumable upload, WholeFile): its request_id is bound
 * and duplicates are looked for first, a file past the size or item limit
 * (bounded by counting records, ItemBound) is left to fail as a whole as before, and each chunk
 * is published as soon as it is staged. A streamed file is only known once
 * its last byte arrives, and a stream that breaks off must leave nothing
 * applied, so its chunks are published when staging ends.
 */
import { createHash } from "node:crypto";
import { trace } from "@opentelemetry/api";
import type { Metrics } from "@stockroom/common/observe";
import type { NatsDeps } from "@stockroom/common/nats";
import { forEachShard, inTransaction } from "@stockroom/common/db";
import { RequestIdMismatchError } from "@stockroom/common";
import { cancelChunks, deleteChunks } from "./chunks.ts";
import { deleteItems } from "./items.ts";
import { bulkMetrics } from "./metrics.ts";
import {
  claimJobFile,
  createJob,
  deleteJobRow,
  findDuplicateJob,
  findJob,
  findJobByRequestId,
  findStalledStaging,
  heartbeatStaging,
  type JobFacts,
  moveJob,
  stalledStaging,
} from "./jobs.ts";
import { BulkFileError, ItemBound, parseBulkFile, type BulkFormat } from "./parse/index.ts";
import { topUpOrLeave, type QueueConfig } from "./queue.ts";
import { finishStaging, stageLines, type StageResult } from "./stage.ts";
import { CHUNK_FORMAT, STAGING_STOPPED, type JobRef } from "./domain.ts";
import type { BulkDb, BulkJobRow } from "./store.ts";
import type { UploadOptions } from "./uploads.ts";

export interface IngestLimits {
  maxBytes: number;
  maxItems: number;
  chunkSize: number;
  /** The newest chunk format to stage (stage.ts StageOptions.maxFormat; BULK_CHUNK_FORMAT). */
  chunkFormat: number;
  /** Same content + options within this window returns the existing job. */
  dedupeWindowMs: number;
  /** Publish a file's chunks as they are staged when the whole file is at hand (see the module comment; BULK_APPLY_WHILE_STAGING). */
  applyWhileStaging: boolean;
  /**
   * How often the process staging a job says it still is (staging_heartbeat_at):
   * well under the workers' BULK_STAGING_STALL_MS, past which they fail the job.
   */
  stagingHeartbeatMs: number;
}

/** DEFAULT_STAGING_STALL_MS: a job staging with no heartbeat for this long is failed (six heartbeats missed). */
export const DEFAULT_STAGING_STALL_MS = 60_000;

export const DEFAULT_LIMITS: IngestLimits = {
  maxBytes: 512 * 1024 * 1024,
  maxItems: 500_000,
  chunkSize: 2000,
  chunkFormat: CHUNK_FORMAT,
  dedupeWindowMs: 24 * 60 * 60 * 1000,
  applyWhileStaging: true,
  stagingHeartbeatMs: 10_000,
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

/** WholeFile is what the caller of ingest knows of a file it holds in full (readWholeFile). */
export interface WholeFile {
  size: number;
  sha256: string;
  /** At most this many items are in the file (ItemBound): past the item limit by this, it may fail TOO_MANY_ITEMS. */
  itemsAtMost: number;
}

/** readWholeFile hashes and measures a file held in full (a completed upload), in one pass. */
export async function readWholeFile(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, format: BulkFormat): Promise<WholeFile> {
  const hash = createHash("sha256");
  const bound = new ItemBound(format);
  let size = 0;
  for await (const part of source) {
    hash.update(part);
    size += part.length;
    bound.push(part);
  }
  return { size, sha256: hash.digest("hex"), itemsAtMost: bound.items() };
}

/** ingest stages a file as a job and queues its first chunks; see the module comment. whole describes the file when the caller holds it in full. */
export async function ingest(
  deps: IngestDeps,
  merchantId: string,
  options: UploadOptions,
  source: AsyncIterable<Uint8Array>,
  whole?: WholeFile,
): Promise<BulkJobRow> {
  const { db, limits } = deps;
  const span = trace.getActiveSpan();
  if (options.requestId !== "") {
    const holder = await findJobByRequestId(db, merchantId, options.requestId);
    if (holder) {
      span?.setAttributes({ "stockroom.bulk.job_id": holder.job_id, "stockroom.bulk.existing": true });
      return sameRequest(holder, options, () => whole?.sha256 ?? hashUpTo(source, Number(holder.file_size)));
    }
  }
  // The job starts unbound: claimJobFile binds its request_id with the content once every byte was read.
  const { jobId } = await createJob(db, { merchantId, ...options, requestId: "" });
  span?.setAttributes({ "stockroom.bulk.job_id": jobId, "stockroom.bulk.existing": false });
  const ref = { merchantId, jobId };
  // While this process stages the job it says so: a job whose staging stops without an end (a restart, the database
  // lost under it, so not even failJob could run) is failed by the workers' reconciler (failStalledStaging).
  const heartbeat = setInterval(() => void heartbeatStaging(db, ref).catch(() => {}), limits.stagingHeartbeatMs);
  heartbeat.unref();
  try {
    return await stageJob(deps, ref, options, source, whole);
  } finally {
    clearInterval(heartbeat);
  }
}

/** stageJob reads, hashes, parses and stages the file of a new job (ingest's body once the job exists). */
async function stageJob(
  deps: IngestDeps,
  ref: JobRef,
  options: UploadOptions,
  source: AsyncIterable<Uint8Array>,
  whole: WholeFile | undefined,
): Promise<BulkJobRow> {
  const { db, limits } = deps;
  const { merchantId, jobId } = ref;
  const span = trace.getActiveSpan();
  const hash = createHash("sha256");
  let size = 0;
  // The source's iterator outlives the parser's loop, so that the rest of a bad file can still be hashed.
  const bytes = source[Symbol.asyncIterator]();
  const next = async () => {
    const r = await bytes.next();
    if (!r.done) {
      size += r.value.length;
      hash.update(r.value);
    }
    return r;
  };
  async function* counted() {
    for (let r = await next(); !r.done; r = await next()) yield r.value;
  }
  /** claim binds the request_id; if another upload bound it first, this job is discarded and that one answers. */
  async function claim(sha: string | null, fileSize = size): Promise<BulkJobRow | undefined> {
    const result = await claimJobFile(db, ref, { requestId: options.requestId, fileSize, contentSha256: sha });
    if (result.claimed) return undefined;
    await discardJob(db, ref);
    return sameRequest(result.holder, options, () => Promise.resolve(sha));
  }
  /** duplicate is the merchant's recent job with the same content and options, when there is no request_id; this one is discarded. */
  async function duplicate(sha: string): Promise<BulkJobRow | undefined> {
    if (options.requestId !== "") return undefined;
    const found = await findDuplicateJob(
      db,
      ref,
      { contentSha256: sha, format: options.format, conflictPolicy: options.conflictPolicy, dryRun: options.dryRun },
      limits.dedupeWindowMs,
    );
    if (found) await discardJob(db, ref);
    return found;
  }
  const { nats } = deps;
  // See the module comment: whatever could still discard the job or fail the file as a whole is settled first.
  const overlap =
    limits.applyWhileStaging &&
    whole !== undefined &&
    nats !== undefined &&
    !options.dryRun &&
    whole.size <= limits.maxBytes &&
    whole.itemsAtMost <= limits.maxItems;
  if (overlap) {
    const settled = (await claim(whole.sha256, whole.size)) ?? (await duplicate(whole.sha256));
    if (settled) return settled;
  }
  let staged: StageResult;
  try {
    staged = await stageLines(
      db,
      ref,
      parseBulkFile(counted(), { format: options.format, maxBytes: limits.maxBytes, maxItems: limits.maxItems }),
      {
        chunkSize: limits.chunkSize,
        stagedVersions: options.conflictPolicy === "skip",
        maxFormat: limits.chunkFormat,
        // A publish that fails does not stop staging (topUpOrLeave).
        onChunk: overlap ? () => topUpOrLeave(db, nats, deps.queue, ref) : undefined,
      },
    );
  } catch (error) {
    if (overlap && !(error instanceof BulkFileError)) {
      // Chunks may have applied already: the job stays, failed, with what it applied (it can be rolled back).
      // Its request_id is released (stagingStopped): the caller gets this error, and its retry runs again.
      const reason = `${STAGING_STOPPED}${error instanceof Error ? error.message : String(error)}`.slice(0, 1000);
      await failJob(db, ref, { error: reason, file_size: size, request_id: null }).catch(() => {});
      throw error;
    }
    if (!(error instanceof BulkFileError)) {
      // The stream broke off (or the server failed) before the end of the file: nothing of it is kept and its
      // request_id stays free, so the upload can be sent again under the same id.
      await discardJob(db, ref).catch(() => {});
      throw error;
    }
    // A bad file fails as a whole, bound to its request_id like any job. Its hash covers the whole file: the rest
    // is read (not parsed) unless the file is already past the size limit, whose hash is left unknown.
    let sha: string | null = null;
    if (size <= limits.maxBytes) {
      try {
        while (size <= limits.maxBytes && !(await next()).done);
      } catch (readError) {
        await discardJob(db, ref).catch(() => {});
        throw readError;
      }
      if (size <= limits.maxBytes) sha = hash.digest("hex");
    }
    const holder = await claim(sha);
    if (holder) return holder;
    await failJob(db, ref, { error: `${error.code}: ${error.message}`.slice(0, 1000), file_size: size });
    return (await findJob(db, merchantId, jobId))!;
  }
  if (!overlap) {
    const sha = hash.digest("hex");
    const settled = (await claim(sha)) ?? (await duplicate(sha));
    if (settled) return settled;
  }
  await finishStaging(db, ref, staged, options.dryRun);
  if (deps.metrics) bulkMetrics(deps.metrics.registry).items.inc({ outcome: "invalid" }, staged.invalid);
  span?.setAttributes({
    "stockroom.bulk.items": staged.total,
    "stockroom.bulk.items.invalid": staged.invalid,
    "stockroom.bulk.chunks": staged.chunks,
  });
  // The job is queued and its chunks are in the ledger: an upload that is accepted stays accepted.
  if (nats && !options.dryRun) await topUpOrLeave(db, nats, deps.queue, ref);
  return (await findJob(db, merchantId, jobId))!;
}

/**
 * sameRequest answers a request_id bound already: its job when the options and
 * the content are the same, REQUEST_ID_MISMATCH when not. The file name is not
 * compared (a renamed file with the same bytes is the same upload). A job bound
 * without a known hash (a file past the size limit) is returned as is.
 */
async function sameRequest(holder: BulkJobRow, options: UploadOptions, contentSha256: () => Promise<string | null> | string | null) {
  if (holder.format !== options.format || holder.conflict_policy !== options.conflictPolicy || Boolean(holder.dry_run) !== options.dryRun) {
    throw new RequestIdMismatchError(options.requestId);
  }
  if (holder.content_sha256 === null) return holder;
  if ((await contentSha256()) !== holder.content_sha256) throw new RequestIdMismatchError(options.requestId);
  return holder;
}

/** hashUpTo hashes a source, or returns null as soon as it is longer than maxSize (it cannot be that file). */
async function hashUpTo(source: AsyncIterable<Uint8Array>, maxSize: number): Promise<string | null> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > maxSize) return null;
    hash.update(chunk);
  }
  return hash.digest("hex");
}

/**
 * failJob ends a job whose file could not be read, or whose staging stopped,
 * with facts (its error): its chunks not yet applied are cancelled. only, if
 * given, must still hold in the UPDATE; false when the job did not move.
 */
async function failJob(db: BulkDb, ref: JobRef, facts: JobFacts, only?: Parameters<typeof moveJob>[5]): Promise<boolean> {
  const now = new Date();
  return inTransaction(db, async (trx) => {
    if (!(await moveJob(trx, ref, "failed", now, facts, only))) return false;
    await cancelChunks(trx, ref);
    return true;
  });
}

/**
 * failStalledStaging fails the jobs of every shard whose staging stopped
 * without an end (jobs.ts stalledStaging: no heartbeat for stallMs), as
 * failJob would have: FAILED with the reason (STAGING_STOPPED), their
 * unapplied chunks cancelled, their request_id released. What was applied
 * stays and can be rolled back; a resumable upload can be completed again
 * (completeUpload stages its stored parts anew) and a file sent again (a
 * failed job is no duplicate). Run by the workers' reconciler.
 */
export async function failStalledStaging(db: BulkDb, stallMs: number, now = new Date()): Promise<number> {
  const perShard = await forEachShard(db, async (shardDb) => {
    let failed = 0;
    for (const ref of await findStalledStaging(shardDb, now, stallMs, 100)) {
      const error = `${STAGING_STOPPED}the process reading this file stopped before its end (a restart, or its database connection lost) and gave no sign for ${Math.round(stallMs / 1000)} s; what was applied stays and can be rolled back; complete the upload again, or send the file again, to apply all of it`;
      // Its caller never had an answer with this job: the request_id is free for the retry.
      if (await failJob(shardDb, ref, { error, request_id: null }, stalledStaging(now, stallMs))) failed++;
    }
    return failed;
  });
  return perShard.reduce((a, b) => a + b, 0);
}

/** discardJob removes a job that turned out to duplicate an earlier one (nothing of it was queued). */
async function discardJob(db: BulkDb, ref: { merchantId: string; jobId: string }) {
  await deleteItems(db, ref, 5_000);
  await deleteChunks(db, ref, 5_000);
  await deleteJobRow(db, ref);
}
