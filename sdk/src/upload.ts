/**
 * uploadBulkFile: a file becomes a bulk job, each of its lines exactly once,
 * whatever the network does, under the caller's one request_id.
 *
 * What the server guarantees: a job is bound to its request_id only once the
 * whole file was received, together with the file's SHA-256; a repeat of the
 * request_id with the same file and options returns that job, with another
 * file or other options it is REQUEST_ID_MISMATCH. A stream that breaks off
 * before its end binds nothing and leaves no job behind.
 *
 * - Resumable parts (the default everywhere): parts go to one upload; after a
 *   failure GetUpload tells how many bytes the server committed and sending
 *   resumes there (a repeated or overlapping part is accepted when
 *   identical). CompleteUpload is repeated until it answers: the upload, or
 *   the request_id, leads the repeat to the same job.
 * - Client streaming (method "stream"; gRPC in Node): one call, staged as it
 *   arrives. If it fails, the upload goes on over resumable parts under the
 *   same request_id (the stream's bytes are not kept, so they are sent again,
 *   once; a second drop then costs one part). If the first stream had reached
 *   its end and the server bound it, CompleteUpload answers with that job.
 *
 * Servers older than this behaviour failed a broken-off stream's job with
 * "upload interrupted" and kept its request_id; for them the upload moves on
 * to a derived id (R.1, R.2, …; request-id.ts), as before.
 */
import {
  ConflictPolicy,
  BulkFileFormat,
  BulkJobFailure,
  BulkJobState,
  type BulkJob,
  type BulkJobOptionsSchema,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { UploadBulkFileRequestSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { createContextValues } from "@connectrpc/connect";
import { attachRequestId, PreconditionError, toStockroomError, type StockroomError } from "./errors.ts";
import { watchBulkJob, type HelperDeps } from "./jobs.ts";
import { attemptRequestId, newRequestId, MAX_REQUEST_ID } from "./request-id.ts";
import { abortReason, retryDelayMs, sleep, type RetryPolicy } from "./retry.ts";
import { parts, pieces, type ByteSource, type Part } from "./sources.ts";
import { kSingleAttempt } from "./transport.ts";

export interface UploadProgress {
  /** Bytes the server acknowledged (parts), or handed to the stream (client streaming), in this attempt. */
  bytesSent: number;
  /** The file size, when known. */
  totalBytes: number | undefined;
  /** Items parsed and validated; set once the server staged the file. */
  itemsValidated?: number;
}

export interface UploadBulkFileOptions {
  /** "csv" or "jsonl"; inferred from the file name or type when left out. */
  format?: "csv" | "jsonl";
  /** The idempotency key of this upload; generated once if left out. A repeat returns the same job. */
  requestId?: string;
  /** Validate and report without changing any product. */
  dryRun?: boolean;
  /** What to do with products changed after the job staged them: "overwrite" (default) or "skip" (report CONFLICT). */
  conflictPolicy?: "overwrite" | "skip";
  /** The file name the job shows; defaults to the source's. */
  fileName?: string;
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
  /** "stream" (one client-streaming call; Node with gRPC only), "parts" (resumable), or "auto" (default): stream where it can. */
  method?: "auto" | "stream" | "parts";
  /** The size of one resumable part, up to 4 MiB. Default 1 MiB. */
  partSize?: number;
  /** How long to keep retrying while every attempt fails, in ms. Default 60,000. */
  retryForMs?: number;
}

export interface UploadDeps extends HelperDeps {
  /** The transport can stream requests (gRPC over HTTP/2 in Node). */
  canStream: boolean;
}

const MAX_MESSAGE = 4 * 1024 * 1024;
const STREAM_PIECE = 1024 * 1024;
const SINGLE_ATTEMPT = () => createContextValues().set(kSingleAttempt, true);

export async function uploadBulkFile(deps: UploadDeps, source: ByteSource, options: UploadBulkFileOptions = {}): Promise<BulkJob> {
  const format = resolveFormat(options.format, source);
  const requestId = options.requestId ?? newRequestId();
  if (requestId.length > MAX_REQUEST_ID) throw new RangeError(`requestId must be at most ${MAX_REQUEST_ID} characters`);
  const partSize = options.partSize ?? 1024 * 1024;
  if (!Number.isInteger(partSize) || partSize < 1 || partSize > MAX_MESSAGE)
    throw new RangeError(`partSize must be 1 to ${MAX_MESSAGE} bytes`);
  const method = options.method ?? "auto";
  if (method === "stream" && !deps.canStream) throw new TypeError('method "stream" needs client streaming: gRPC in Node');
  const base = {
    format: format === "csv" ? BulkFileFormat.CSV : BulkFileFormat.JSON_LINES,
    dryRun: options.dryRun ?? false,
    conflictPolicy: options.conflictPolicy === "skip" ? ConflictPolicy.SKIP : ConflictPolicy.OVERWRITE,
    fileName: (options.fileName ?? source.name ?? "").slice(0, 255),
  };
  const run: Run = {
    deps,
    source,
    options,
    partSize,
    jobOptions: (attempt) => ({ ...base, requestId: attemptRequestId(requestId, attempt) }),
    patience: createPatience(deps.retry, options.retryForMs ?? 60_000),
    progress: (bytesSent, itemsValidated) =>
      options.onProgress?.({ bytesSent, totalBytes: source.size, ...(itemsValidated === undefined ? {} : { itemsValidated }) }),
  };
  // "auto" sends resumable parts: a dropped connection then costs one part, never the file.
  const useStream = method === "stream";
  try {
    const job = useStream ? await byStream(run) : await byParts(run, 0);
    run.progress(Number(job.fileSize), Number(job.counts?.total ?? 0n));
    return job;
  } catch (error) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    throw attachRequestId(error, requestId);
  }
}

interface Run {
  deps: UploadDeps;
  source: ByteSource;
  options: UploadBulkFileOptions;
  partSize: number;
  jobOptions(attempt: number): MessageInitShape<typeof BulkJobOptionsSchema>;
  patience: Patience;
  progress(bytesSent: number, itemsValidated?: number): void;
}

async function byStream(run: Run): Promise<BulkJob> {
  const { deps, source, options } = run;
  let sourceError: { error: unknown } | undefined;
  let sent = 0;
  const jobOptions = run.jobOptions(0);
  async function* requests(): AsyncGenerator<MessageInitShape<typeof UploadBulkFileRequestSchema>> {
    yield { payload: { case: "options", value: jobOptions } };
    const chunks = pieces(source.read(0), STREAM_PIECE)[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await chunks.next();
      } catch (error) {
        sourceError = { error };
        throw error;
      }
      if (next.done) break;
      yield { payload: { case: "chunk", value: next.value } };
      sent += next.value.length;
      run.progress(sent);
    }
  }
  try {
    const { job } = await deps.bulk.uploadBulkFile(requests(), { signal: options.signal });
    const settled = await settle(run, job!);
    if (!interrupted(settled)) return settled;
    return byParts(run, 1); // an older server kept the id of a broken-off stream: the chain moves on
  } catch (e) {
    if (sourceError) throw sourceError.error; // reading the file failed: not the network's fault
    const error = toStockroomError(e);
    if (options.signal?.aborted) throw abortReason(options.signal);
    if (!source.replayable) throw error;
    await run.patience.wait(error, options.signal);
    // The stream's bytes are not kept by the server: the same request_id goes on over resumable parts,
    // so that a link dropping again costs one part, not the file.
    return byParts(run, 0);
  }
}

async function byParts(run: Run, firstAttempt: number): Promise<BulkJob> {
  const { deps, source, options } = run;
  const signal = options.signal;
  const expectedSize = BigInt(source.size ?? 0);
  for (let attempt = firstAttempt; ; attempt++) {
    const jobOptions = run.jobOptions(attempt);
    // A repeated CreateUpload leaves an empty upload behind, which expires: harmless.
    const { upload } = await persist(run, () =>
      deps.bulk.createUpload({ options: jobOptions, expectedSize }, { signal, contextValues: SINGLE_ATTEMPT() }),
    );
    const uploadId = upload!.id;
    const totalSize = BigInt(await sendParts(run, uploadId));
    let settled: BulkJob;
    for (let completions = 1; ; completions++) {
      // CompleteUpload stages the whole file before it answers: no deadline. A repeat finds the same job.
      const { job } = await persist(run, () =>
        deps.bulk.completeUpload({ uploadId, totalSize }, { signal, timeoutMs: 0, contextValues: SINGLE_ATTEMPT() }),
      );
      settled = await settle(run, job!);
      // The server's staging stopped (a restart, its database lost) and it failed the job: the upload's stored
      // parts are staged anew by completing it again, under the same request_id, which the server released.
      if (!stagingStopped(settled) || completions >= MAX_COMPLETIONS) break;
    }
    if (!interrupted(settled)) return settled;
    if (!source.replayable)
      throw new Error(`uploadBulkFile: job ${settled.id} failed while staging (${settled.error}) and a stream source cannot be sent again`);
  }
}

/** sendParts sends the source to an upload, resuming from the server's committed size after any failure; it returns the file size. */
async function sendParts(run: Run, uploadId: string): Promise<number> {
  const { deps, source, options, partSize } = run;
  const signal = options.signal;
  let reader = parts(source, 0, partSize);
  let pending: Part | undefined;
  let committed = 0;
  try {
    for (;;) {
      const part = pending ?? (await reader.next()).value;
      if (!part) return committed;
      try {
        const res = await deps.bulk.appendUploadPart(
          { uploadId, offset: BigInt(part.offset), data: part.data },
          { signal, contextValues: SINGLE_ATTEMPT() },
        );
        committed = Number(res.committedSize);
        pending = undefined;
        run.patience.reset();
        run.progress(committed);
        continue;
      } catch (e) {
        const error = toStockroomError(e);
        if (error instanceof PreconditionError && error.reason === "UPLOAD_GAP") {
          committed = Number(error.metadata["committed_size"]); // the server says where it is
        } else {
          // Anything else the server refused (e.g. UPLOAD_OVERLAP_MISMATCH: the file changed while
          // it was read) is final; a failure the patience allows is followed by asking where to resume.
          await run.patience.wait(error, signal);
          const { upload } = await persist(run, () => deps.bulk.getUpload({ uploadId }, { signal, contextValues: SINGLE_ATTEMPT() }));
          committed = Number(upload!.committedSize);
        }
      }
      const end = part.offset + part.data.length;
      if (committed >= end) pending = undefined;
      else if (committed >= part.offset) pending = { offset: committed, data: part.data.subarray(committed - part.offset) };
      else {
        if (!source.replayable)
          throw new Error(`uploadBulkFile: the server has ${committed} bytes, fewer than were already read from a stream source`);
        await reader.return(undefined);
        reader = parts(source, committed, partSize);
        pending = undefined;
      }
    }
  } finally {
    await reader.return(undefined);
  }
}

/** persist repeats a call the upload needs for as long as its patience allows (only an acknowledged part renews it). */
async function persist<T>(run: Run, call: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch (e) {
      await run.patience.wait(toStockroomError(e), run.options.signal);
    }
  }
}

/** settle waits out a job another attempt is still staging (one found by its request_id). */
async function settle(run: Run, job: BulkJob): Promise<BulkJob> {
  if (staged(job)) return job;
  let last = job;
  for await (const { job: j } of watchBulkJob(run.deps, job.id, { signal: run.options.signal, until: staged })) last = j;
  return last;
}

/** staged: the server is done receiving and validating the file (every final state is past staging too). */
function staged(job: BulkJob): boolean {
  return job.state !== BulkJobState.RECEIVING && job.state !== BulkJobState.VALIDATING;
}

/** MAX_COMPLETIONS bounds how often one upload is completed again after its staging stopped. */
const MAX_COMPLETIONS = 3;

/**
 * stagingStopped: the server failed the job because its staging stopped, not because of the file (it keeps the
 * parts). Servers before BulkJob.failure said so only by the error's prefix.
 */
function stagingStopped(job: BulkJob): boolean {
  if (job.state !== BulkJobState.FAILED) return false;
  if (job.failure !== BulkJobFailure.UNSPECIFIED) return job.failure === BulkJobFailure.STAGING_STOPPED;
  return job.error.startsWith("staging stopped: ");
}

/** interrupted: the job's upload broke off while staging, so nothing of it was applied and its request_id is spent. */
function interrupted(job: BulkJob): boolean {
  return job.state === BulkJobState.FAILED && job.error.startsWith("upload interrupted");
}

function resolveFormat(format: UploadBulkFileOptions["format"], source: ByteSource): "csv" | "jsonl" {
  if (format === "csv" || format === "jsonl") return format;
  if (format !== undefined) throw new TypeError(`format must be "csv" or "jsonl", not ${JSON.stringify(format)}`);
  const name = source.name?.toLowerCase() ?? "";
  const type = source.type?.toLowerCase() ?? "";
  if (name.endsWith(".csv") || type === "text/csv") return "csv";
  if (/\.(jsonl|ndjson)$/.test(name) || /^application\/(jsonl|x-ndjson|x-jsonlines|jsonlines)$/.test(type)) return "jsonl";
  throw new TypeError('uploadBulkFile: pass options.format ("csv" or "jsonl"); it cannot be inferred from this source');
}

/** Patience bounds retries by time: backoff grows per failure, and failing for longer than windowMs gives up. */
interface Patience {
  wait(error: StockroomError, signal: AbortSignal | undefined): Promise<void>;
  reset(): void;
}

function createPatience(policy: RetryPolicy, windowMs: number): Patience {
  let failures = 0;
  let since: number | undefined;
  const unbounded = { ...policy, maxAttempts: Number.POSITIVE_INFINITY };
  return {
    async wait(error, signal) {
      if (signal?.aborted) throw abortReason(signal);
      if (policy.maxAttempts <= 1) throw error;
      const delay = retryDelayMs(error, true, failures, unbounded);
      since ??= Date.now();
      if (delay === undefined || Date.now() + delay - since > windowMs) throw error;
      failures++;
      await sleep(delay, signal);
    },
    reset() {
      failures = 0;
      since = undefined;
    },
  };
}
