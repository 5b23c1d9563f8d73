/**
 * uploadBulkFile: a file becomes a bulk job, each of its lines exactly once,
 * whatever the network does.
 *
 * What the server guarantees: a job is bound to its request_id when its
 * upload starts, and a repeated request_id returns that job; a job whose
 * upload broke off fails with "upload interrupted" and nothing of it is ever
 * applied. What the SDK adds: one logical upload is a chain of attempts with
 * request_ids derived from the caller's (R, then R.1, R.2, …; see
 * request-id.ts), and the chain moves to the next id only when the current
 * one can never produce an applied job. At most one id of a chain ever
 * stages the file, so each line lands once, and calling again with the same
 * requestId walks the same chain to the same job.
 *
 * - Client streaming (gRPC in Node, files and Blobs): if the stream fails
 *   and no stream of that id was ever sent to its end, the server never got
 *   the end of the file and that id can never stage it; the upload goes on
 *   with the next id over resumable parts (so a link that drops again costs
 *   a part, not the file). Once a stream of the id was ended, the outcome is
 *   unknown: the same id is streamed again, and the server either answers at
 *   once with the job it has (a job still validating is waited for) or
 *   stages this stream as it.
 * - Resumable parts (browsers, Connect, gRPC-Web, one-shot streams): parts go
 *   to one upload; after a failure GetUpload tells how many bytes the server
 *   committed and sending resumes there (a repeated or overlapping part is
 *   accepted when identical). CompleteUpload is repeated until it answers:
 *   the upload, or the request_id, leads the repeat to the same job.
 *
 * A job found "upload interrupted" moves the chain to the next id.
 */
import {
  ConflictPolicy,
  BulkFileFormat,
  BulkJobState,
  type BulkJob,
  type BulkJobOptionsSchema,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { UploadBulkFileRequestSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { createContextValues } from "@connectrpc/connect";
import { PreconditionError, toStockroomError, type StockroomError } from "./errors.ts";
import { watchBulkJob, type HelperDeps } from "./jobs.ts";
import { attemptRequestId, newRequestId, MAX_REQUEST_ID } from "./request-id.ts";
import { retryDelayMs, sleep, type RetryPolicy } from "./retry.ts";
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
  const useStream = method === "stream" || (method === "auto" && deps.canStream && source.replayable);
  const job = useStream ? await byStream(run) : await byParts(run, 0);
  run.progress(Number(job.fileSize), Number(job.counts?.total ?? 0n));
  return job;
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
  // endedOnce: some stream of the current id was sent to its end, so the server may have staged it.
  let endedOnce = false;
  for (let attempt = 0; ; ) {
    let sent = 0;
    let sourceError: { error: unknown } | undefined;
    const jobOptions = run.jobOptions(attempt);
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
      endedOnce = true;
    }
    try {
      const { job } = await deps.bulk.uploadBulkFile(requests(), { signal: options.signal });
      const settled = await settle(run, job!);
      if (!interrupted(settled)) return settled;
      attempt++; // an earlier stream of this id broke off: the chain moves on
      endedOnce = false;
    } catch (e) {
      if (sourceError) throw sourceError.error; // reading the file failed: not the network's fault
      const error = toStockroomError(e);
      if (options.signal?.aborted || !source.replayable) throw error;
      await run.patience.wait(error, options.signal);
      // No stream of this id was ever ended: the server never got the end of the file, so this id can
      // never stage it. The next id goes over resumable parts, so that a link dropping again costs one
      // part, not the file.
      if (!endedOnce) return byParts(run, attempt + 1);
      // One was: the server may have the whole file. Sending the same id again either returns that
      // job (without reading this stream) or, if the server has none, stages this stream as it.
    }
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
    // CompleteUpload stages the whole file before it answers: no deadline. A repeat finds the same job.
    const { job } = await persist(run, () =>
      deps.bulk.completeUpload({ uploadId, totalSize }, { signal, timeoutMs: 0, contextValues: SINGLE_ATTEMPT() }),
    );
    const settled = await settle(run, job!);
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
      if (signal?.aborted || policy.maxAttempts <= 1) throw error;
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
