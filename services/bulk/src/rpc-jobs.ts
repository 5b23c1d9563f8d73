/**
 * BulkJobService calls on jobs once they exist: Get, List, ListItems, Watch,
 * the CSV report, Cancel and Rollback. Every query names the caller's merchant, so
 * another merchant's job is NOT_FOUND.
 */
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import type { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { BulkJobState, BulkItemOutcome, ConflictPolicy } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { principalOf, decodePageToken, encodePageToken, pageSize } from "@stockroom/common/rpc";
import {
  createWatchHub,
  type FieldViolation,
  InvalidArgumentError,
  NotFoundError,
  PreconditionError,
  ULID_PATTERN,
} from "@stockroom/common";
import { inTransaction } from "@stockroom/common/db";
import type { NatsDeps } from "@stockroom/common/nats";
import { itemToProto, jobToProto, OUTCOME_TO_PROTO, reverse, STATE_TO_PROTO } from "./convert.ts";
import { FINAL_STATES, type ConflictPolicy as PolicyName } from "./domain.ts";
import { listItems } from "./items.ts";
import { findJob, findJobs, listJobs, moveJob } from "./jobs.ts";
import { topUpOrLeave, type QueueConfig } from "./queue.ts";
import { REPORT_HEADER, reportLines } from "./report.ts";
import { startRollback } from "./rollback.ts";
import type { BulkDb, BulkJobRow, ItemOutcomeName } from "./store.ts";

type JobMethods =
  | "getBulkJob"
  | "listBulkJobs"
  | "listBulkJobItems"
  | "watchBulkJob"
  | "cancelBulkJob"
  | "downloadBulkJobReport"
  | "rollbackBulkJob";

const STATE_NAMES = reverse(STATE_TO_PROTO);
/** A rollback's conflict policies: SKIP unless the caller says OVERWRITE; any other value is refused. */
const ROLLBACK_POLICIES = new Map<ConflictPolicy, PolicyName>([
  [ConflictPolicy.UNSPECIFIED, "skip"],
  [ConflictPolicy.SKIP, "skip"],
  [ConflictPolicy.OVERWRITE, "overwrite"],
]);
/** The longest request_id any mutation accepts (as common's idempotency and the upload options). */
const REQUEST_ID_MAX = 128;
const OUTCOME_NAMES = reverse(OUTCOME_TO_PROTO);

export interface BulkJobDeps {
  db: BulkDb;
  /** Publishes a rollback's chunks at once; without it the workers' reconciler does. */
  nats?: NatsDeps;
  queue: QueueConfig;
  /** How often WatchBulkJob looks for changes (one look for every open watch of the process). */
  watchIntervalMs?: number;
  /** Aborted when the process drains: open watches end (see BulkModuleOptions.shutdown). */
  shutdown?: AbortSignal;
}

export function createBulkJobMethods({
  db,
  nats,
  queue,
  watchIntervalMs = 250,
  shutdown,
}: BulkJobDeps): Pick<ServiceImpl<typeof BulkJobService>, JobMethods> {
  const load = async (ctx: HandlerContext, jobId: string): Promise<BulkJobRow> => {
    if (!ULID_PATTERN.test(jobId)) throw new InvalidArgumentError([{ field: "job_id", description: "is not a job id" }]);
    const job = await findJob(db, principalOf(ctx).merchantId, jobId);
    if (!job) throw new NotFoundError("bulk job", jobId);
    return job;
  };
  // One poller for every open WatchBulkJob of the process: each look reads a merchant's watched jobs at once,
  // and streams watching the same job (a dashboard's tabs, an integration) share its read.
  const watches = createWatchHub<BulkJobRow>({
    read: (merchantId, jobIds) => findJobs(db, merchantId, jobIds),
    versionOf: (job) => Number(job.version),
    gone: (jobId) => new NotFoundError("bulk job", jobId),
    intervalMs: watchIntervalMs,
  });

  return {
    async getBulkJob(req, ctx) {
      return { job: jobToProto(await load(ctx, req.jobId)) };
    },

    async listBulkJobs(req, ctx) {
      const merchantId = principalOf(ctx).merchantId;
      const state = req.state === BulkJobState.UNSPECIFIED ? undefined : STATE_NAMES.get(req.state);
      if (req.state !== BulkJobState.UNSPECIFIED && !state) {
        throw new InvalidArgumentError([{ field: "state", description: `unknown state ${req.state}` }]);
      }
      const limit = pageSize(req.pageSize, 100, 1000);
      const after = decodePageToken(req.pageToken, { state });
      const rows = await listJobs(db, merchantId, { state, beforeJobId: after ? String(after[0]) : undefined, limit: limit + 1 });
      const page = rows.slice(0, limit);
      return {
        jobs: page.map(jobToProto),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.job_id], { state }) : "",
      };
    },

    async listBulkJobItems(req, ctx) {
      const job = itemsKept(await load(ctx, req.jobId));
      const outcomes = outcomeFilter(req.outcomes);
      const limit = pageSize(req.pageSize, 500, 5000);
      const after = decodePageToken(req.pageToken, { job: job.job_id, outcomes });
      const rows = await itemsPage(db, job, outcomes, after ? Number(after[0]) : 0, limit + 1);
      const page = rows.slice(0, limit);
      return {
        items: page.map(itemToProto),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.line_no], { job: job.job_id, outcomes }) : "",
      };
    },

    async *watchBulkJob(req, ctx) {
      let job = await load(ctx, req.jobId);
      const signal = shutdown ? AbortSignal.any([ctx.signal, shutdown]) : ctx.signal;
      const rate = createRateMeter();
      for (;;) {
        const done = finished(job);
        const perSecond = rate(done);
        const remaining = Number(job.valid_items) - done;
        yield {
          job: jobToProto(job),
          progress: {
            itemsPerSecond: perSecond,
            estimatedTimeRemaining: perSecond > 0 && remaining > 0 ? durationFromMs(Math.round((remaining / perSecond) * 1000)) : undefined,
          },
        };
        if (FINAL_STATES.has(job.state) && job.state !== "rolling_back") return;
        // Resolves with the job once its version moved (the process's watch hub), or undefined once the call ends.
        const next = await watches.changed(job.merchant_id, job.job_id, Number(job.version), signal);
        if (next === undefined) return;
        job = next;
      }
    },

    async cancelBulkJob(req, ctx) {
      const job = await load(ctx, req.jobId);
      if (!FINAL_STATES.has(job.state)) {
        const now = new Date();
        await inTransaction(db, (trx) => moveJob(trx, { merchantId: job.merchant_id, jobId: job.job_id }, "cancelled", now));
      }
      return { job: jobToProto((await findJob(db, job.merchant_id, job.job_id))!) };
    },

    async rollbackBulkJob(req, ctx) {
      const { merchantId, actor } = principalOf(ctx);
      // Validated like every other mutation, before anything is read or changed.
      const violations: FieldViolation[] = [];
      if (!ULID_PATTERN.test(req.jobId)) violations.push({ field: "job_id", description: "is not a job id" });
      const policy = ROLLBACK_POLICIES.get(req.conflictPolicy);
      if (!policy) {
        violations.push({
          field: "conflict_policy",
          description: `unknown policy ${req.conflictPolicy}: use SKIP (the default) or OVERWRITE`,
        });
      }
      if (req.requestId.length > REQUEST_ID_MAX) {
        violations.push({ field: "request_id", description: `must be at most ${REQUEST_ID_MAX} characters` });
      }
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const job = await findJob(db, merchantId, req.jobId);
      if (!job) throw new NotFoundError("bulk job", req.jobId);
      await startRollback(db, job, policy!, actor);
      if (nats) await topUpOrLeave(db, nats, queue, { merchantId, jobId: job.job_id });
      return { job: jobToProto((await findJob(db, merchantId, job.job_id))!) };
    },

    async *downloadBulkJobReport(req, ctx) {
      const job = itemsKept(await load(ctx, req.jobId));
      const outcomes = outcomeFilter(req.outcomes);
      yield { chunk: new TextEncoder().encode(REPORT_HEADER) };
      for (let after = 0; !ctx.signal.aborted; ) {
        const rows = await itemsPage(db, job, outcomes, after, 5000);
        if (rows.length === 0) return;
        yield { chunk: new TextEncoder().encode(reportLines(rows)) };
        after = Number(rows.at(-1)!.line_no);
      }
    },
  };
}

function outcomeFilter(outcomes: BulkItemOutcome[]): ItemOutcomeName[] | undefined {
  const names = outcomes
    .filter((o) => o !== BulkItemOutcome.UNSPECIFIED)
    .map((o) => {
      const name = OUTCOME_NAMES.get(o);
      if (!name) throw new InvalidArgumentError([{ field: "outcomes", description: `unknown outcome ${o}` }]);
      return name;
    });
  return names.length > 0 ? [...new Set(names)].sort() : undefined;
}

function itemsPage(db: BulkDb, job: BulkJobRow, outcomes: ItemOutcomeName[] | undefined, afterLine: number, limit: number) {
  return listItems(db, { merchantId: job.merchant_id, jobId: job.job_id }, outcomes, afterLine, limit);
}

/** itemsKept passes a job whose per-item details are still kept (prune.ts removes them after a retention period). */
function itemsKept(job: BulkJobRow): BulkJobRow {
  if (job.items_pruned_at) {
    throw new PreconditionError(
      "ITEMS_EXPIRED",
      "the per-item details of this job have passed their retention period and were deleted; the job's counts remain",
      {
        pruned_at: job.items_pruned_at.toISOString(),
      },
    );
  }
  return job;
}

/** finished counts the valid items that reached an outcome. */
function finished(job: BulkJobRow): number {
  return Number(job.applied_items) + Number(job.unchanged_items) + Number(job.conflict_items) + Number(job.failed_items);
}

/** createRateMeter turns successive done-counts into items per second over a sliding ~5 s window. */
function createRateMeter(): (done: number) => number {
  const samples: { at: number; done: number }[] = [];
  return (done) => {
    const at = performance.now();
    samples.push({ at, done });
    while (samples.length > 2 && at - samples[0]!.at > 5000) samples.shift();
    const first = samples[0]!;
    return at > first.at ? ((done - first.done) * 1000) / (at - first.at) : 0;
  };
}
