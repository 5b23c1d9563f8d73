/**
 * Following bulk jobs: watchBulkJob (progress that survives a dropped
 * connection), waitForBulkJob (the final state, with a deadline) and
 * downloadBulkJobReport (the per-item CSV as a stream).
 */
import type { Client } from "@connectrpc/connect";
import {
  BulkJobState,
  type BulkItemOutcome,
  type BulkJob,
  type BulkJobProgress,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { toStockroomError } from "./errors.ts";
import type { RetryPolicy } from "./retry.ts";
import { createCallGuard } from "./transport.ts";
import { follow, type FollowOptions } from "./follow.ts";

/** HelperDeps are what the job and upload helpers call through. */
export interface HelperDeps {
  bulk: Client<typeof BulkJobService>;
  retry: RetryPolicy;
}

/** BulkJobUpdate is one state of a job, with its live rate while it runs. */
export interface BulkJobUpdate {
  job: BulkJob;
  progress: BulkJobProgress | undefined;
}

/** FINAL_STATES end a job's processing (a rollback may still follow). */
export const FINAL_STATES: ReadonlySet<BulkJobState> = new Set([
  BulkJobState.SUCCEEDED,
  BulkJobState.PARTIALLY_SUCCEEDED,
  BulkJobState.FAILED,
  BulkJobState.CANCELLED,
  BulkJobState.ROLLED_BACK,
]);

export function isFinalState(state: BulkJobState): boolean {
  return FINAL_STATES.has(state);
}

export type WatchOptions = FollowOptions<BulkJob>;

/**
 * watchBulkJob yields the job each time it changes, ending after a final
 * state. When the connection drops or the server ends the watch early, it
 * reconnects with backoff (follow.ts): a final state reached meanwhile is
 * never lost, and versions already seen are not yielded twice.
 */
export async function* watchBulkJob(deps: HelperDeps, jobId: string, options: WatchOptions = {}): AsyncGenerator<BulkJobUpdate> {
  const updates = follow(
    {
      what: `watchBulkJob: could not follow job ${jobId}`,
      retry: deps.retry,
      // deps.bulk cancels a stream that is left early (see cancellableStreams in client.ts).
      open: (signal) => deps.bulk.watchBulkJob({ jobId }, { signal }),
      resourceOf: (response) => response.job,
      read: async (signal) => (await deps.bulk.getBulkJob({ jobId }, { signal })).job,
      version: (job) => job.version,
      isFinal: (job) => isFinalState(job.state),
    },
    options,
  );
  for await (const { resource: job, response } of updates) yield { job, progress: response?.progress };
}

export interface WaitOptions {
  signal?: AbortSignal;
  /** Give up after this many ms (a StockroomError with code DEADLINE_EXCEEDED). Default: no limit. */
  timeoutMs?: number;
}

/** waitForBulkJob resolves to the job once it reaches a final state. Its timer is cleared however it ends. */
export async function waitForBulkJob(deps: HelperDeps, jobId: string, options: WaitOptions = {}): Promise<BulkJob> {
  const guard = createCallGuard(options.signal, options.timeoutMs);
  try {
    let last: BulkJob | undefined;
    for await (const { job } of watchBulkJob(deps, jobId, { signal: guard.signal })) last = job;
    if (!last) throw new Error(`waitForBulkJob: job ${jobId} sent no state`);
    return last;
  } catch (e) {
    if (guard.signal.aborted && !options.signal?.aborted) throw toStockroomError(guard.signal.reason);
    throw e;
  } finally {
    guard.release();
  }
}

export interface ReportOptions {
  signal?: AbortSignal;
  /** Only items with these outcomes; empty for all. */
  outcomes?: BulkItemOutcome[];
}

/** ReportStream is the per-item CSV report: iterate its bytes, or take it as a web ReadableStream or as text. */
export interface ReportStream extends AsyncIterable<Uint8Array> {
  readableStream(): ReadableStream<Uint8Array>;
  text(): Promise<string>;
}

/**
 * downloadBulkJobReport streams a job's report (CSV: line_number, sku,
 * outcome, field, code, message). A connection that fails before the first
 * byte is retried; later, the error is thrown (the report is not resumable).
 */
export function downloadBulkJobReport(deps: HelperDeps, jobId: string, options: ReportOptions = {}): ReportStream {
  async function* bytes(): AsyncGenerator<Uint8Array> {
    // deps.bulk cancels the call when this is left early (see cancellableStreams in client.ts).
    for await (const { chunk } of deps.bulk.downloadBulkJobReport(
      { jobId, outcomes: options.outcomes ?? [] },
      { signal: options.signal },
    )) {
      if (chunk.length > 0) yield chunk;
    }
  }
  return {
    [Symbol.asyncIterator]: () => bytes(),
    readableStream() {
      const it = bytes();
      return new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            const r = await it.next();
            if (r.done) controller.close();
            else controller.enqueue(r.value);
          } catch (e) {
            controller.error(e);
          }
        },
        async cancel() {
          await it.return(undefined);
        },
      });
    },
    async text() {
      const decoder = new TextDecoder();
      let out = "";
      for await (const chunk of bytes()) out += decoder.decode(chunk, { stream: true });
      return out + decoder.decode();
    },
  };
}
