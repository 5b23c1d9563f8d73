/**
 * The bulk_jobs table: the only module that writes it. Every state change
 * goes through moveJob, which lets the database apply only the transitions
 * of the state machine (domain.ts NEXT_STATES) and writes the job's
 * bulk_job.finished event in the same transaction when the job ends.
 * Counters change by relative updates, so chunks of one job apply in
 * parallel and hold the job row only from their update to their commit.
 */
import type { Expression, ExpressionBuilder, SqlBool } from "kysely";
import { deferWrite, ER_DUP_ENTRY, mysqlErrno } from "@stockroom/common/db";
import { serializeTraceContext } from "@stockroom/common/observe";
import { newUlid } from "@stockroom/common";
import { FINAL_STATES, statesInto, type ConflictPolicy, type JobRef, type JobState } from "./domain.ts";
import { recordJobFinished } from "./events.ts";
import type { BulkDb, BulkJobRow, BulkTables, BulkTx } from "./store.ts";

export interface NewJob {
  merchantId: string;
  requestId: string;
  format: BulkJobRow["format"];
  conflictPolicy: ConflictPolicy;
  dryRun: boolean;
  fileName: string;
  /** Who creates the job (Principal.actor): the actor of the product changes it makes. */
  actor?: string;
}

/**
 * createJob starts a job in RECEIVING. A request_id already used by this
 * merchant returns that job instead (AIP-155), so a retried upload never
 * makes a second job. The caller's trace context is kept with the job, so
 * every chunk, whoever publishes it and when, joins the upload's trace.
 */
export async function createJob(db: BulkDb, job: NewJob, now = new Date()): Promise<{ jobId: string; existing: boolean }> {
  const jobId = newUlid(now.getTime());
  try {
    await db
      .insertInto("bulk_jobs")
      .values({
        merchant_id: job.merchantId,
        job_id: jobId,
        request_id: job.requestId === "" ? null : job.requestId,
        content_sha256: null,
        format: job.format,
        conflict_policy: job.conflictPolicy,
        rollback_policy: null,
        items_pruned_at: null,
        trace_context: serializeTraceContext(),
        created_by: job.actor ?? null,
        rollback_by: null,
        dry_run: job.dryRun,
        file_name: job.fileName,
        file_size: 0,
        state: "receiving",
        total_items: 0,
        valid_items: 0,
        invalid_items: 0,
        applied_items: 0,
        unchanged_items: 0,
        conflict_items: 0,
        failed_items: 0,
        rolled_back_items: 0,
        chunk_count: 0,
        chunks_done: 0,
        error: "",
        version: 1,
        created_at: now,
        updated_at: now,
        ended_at: null,
        staging_heartbeat_at: now,
      })
      .execute();
    return { jobId, existing: false };
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error;
    const row = await db
      .selectFrom("bulk_jobs")
      .select("job_id")
      .where("merchant_id", "=", job.merchantId)
      .where("request_id", "=", job.requestId)
      .executeTakeFirstOrThrow();
    return { jobId: row.job_id, existing: true };
  }
}

/** findJob reads one of the merchant's jobs; forUpdate locks its row for the transaction. */
export async function findJob(db: BulkDb | BulkTx, merchantId: string, jobId: string, forUpdate = false): Promise<BulkJobRow | undefined> {
  let q = db.selectFrom("bulk_jobs").selectAll().where("merchant_id", "=", merchantId).where("job_id", "=", jobId);
  if (forUpdate) q = q.forUpdate();
  return q.executeTakeFirst();
}

/** findJobs reads some of a merchant's jobs by id (one statement), keyed by id: what WatchBulkJob's watch hub polls. */
export async function findJobs(db: BulkDb, merchantId: string, jobIds: readonly string[]): Promise<Map<string, BulkJobRow>> {
  const rows = await db.selectFrom("bulk_jobs").selectAll().where("merchant_id", "=", merchantId).where("job_id", "in", jobIds).execute();
  return new Map(rows.map((row) => [row.job_id, row]));
}

/** listJobs reads one keyset page of a merchant's jobs, newest first. */
export function listJobs(
  db: BulkDb,
  merchantId: string,
  query: { state?: JobState; beforeJobId?: string; limit: number },
): Promise<BulkJobRow[]> {
  let q = db.selectFrom("bulk_jobs").selectAll().where("merchant_id", "=", merchantId);
  if (query.state) q = q.where("state", "=", query.state);
  if (query.beforeJobId) q = q.where("job_id", "<", query.beforeJobId);
  return q.orderBy("job_id", "desc").limit(query.limit).execute();
}

/**
 * findDuplicateJob returns the merchant's earlier job, younger than
 * windowMs and not failed or cancelled, for the same content and options.
 */
export function findDuplicateJob(
  db: BulkDb,
  job: JobRef,
  same: { contentSha256: string; format: BulkJobRow["format"]; conflictPolicy: ConflictPolicy; dryRun: boolean },
  windowMs: number,
): Promise<BulkJobRow | undefined> {
  return db
    .selectFrom("bulk_jobs")
    .selectAll()
    .where("merchant_id", "=", job.merchantId)
    .where("content_sha256", "=", same.contentSha256)
    .where("format", "=", same.format)
    .where("conflict_policy", "=", same.conflictPolicy)
    .where("dry_run", "=", same.dryRun)
    .where("created_at", ">", new Date(Date.now() - windowMs))
    .where("state", "not in", ["failed", "cancelled"])
    .where("job_id", "!=", job.jobId)
    .orderBy("job_id")
    .limit(1)
    .executeTakeFirst();
}

/**
 * jobActor names who made the product changes of a job (its creator) or of
 * its rollback (whoever asked for it), as the audit trail names callers;
 * jobs created before those were kept (2026-12-05) name the job itself.
 */
export function jobActor(job: Pick<BulkJobRow, "job_id" | "created_by" | "rollback_by">, of: "apply" | "rollback"): string {
  return (of === "apply" ? job.created_by : job.rollback_by) ?? `bulk_job:${job.job_id}`;
}

/** The columns a transition may set besides the state. */
export type JobFacts = Partial<
  Pick<
    BulkJobRow,
    | "error"
    | "request_id"
    | "file_size"
    | "content_sha256"
    | "total_items"
    | "valid_items"
    | "invalid_items"
    | "chunk_count"
    | "chunks_done"
    | "rollback_policy"
    | "rollback_by"
  >
>;

/**
 * moveJob moves a job to `to` from any state the state machine allows
 * (`only` may narrow that further), setting `facts` with it, and writes the
 * bulk_job.finished event when `to` is final. It tells whether the job
 * moved: false means it was not in a state that allows the move (another
 * path got there first, or the move was never allowed).
 */
export async function moveJob(
  trx: BulkTx,
  ref: JobRef,
  to: JobState,
  now: Date,
  facts: JobFacts = {},
  only?: (eb: ExpressionBuilder<BulkTables, "bulk_jobs">) => Expression<SqlBool>,
): Promise<boolean> {
  const final = FINAL_STATES.has(to);
  let update = trx
    .updateTable("bulk_jobs")
    .set((eb) => ({ ...facts, state: to, ended_at: final ? now : null, updated_at: now, version: eb("version", "+", 1) }))
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("state", "in", statesInto(to));
  if (only) update = update.where(only);
  const moved = await update.executeTakeFirst();
  if (moved.numUpdatedRows !== 1n) return false;
  if (final) await recordJobFinished(trx, (await findJob(trx, ref.merchantId, ref.jobId))!, now);
  return true;
}

/** STAGING_STATES are those a job is in while a process reads and stages its file. */
const STAGING_STATES: readonly JobState[] = ["receiving", "validating"];

/** isStaging tells whether a job is still being read and staged (by this process or another). */
export function isStaging(job: Pick<BulkJobRow, "state">): boolean {
  return STAGING_STATES.includes(job.state);
}

/**
 * LEGACY_STALL_MS is how long a staging job without a heartbeat (staged by a
 * release before heartbeats, during a rolling release) may go unchanged
 * before it counts as stalled: such a process may still be reading a slow
 * upload.
 */
const LEGACY_STALL_MS = 3600_000;

/** heartbeatStaging says that this process is still staging the job (ingest, every few seconds). */
export async function heartbeatStaging(db: BulkDb, ref: JobRef, now = new Date()): Promise<void> {
  await db
    .updateTable("bulk_jobs")
    .set({ staging_heartbeat_at: now })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .where("state", "in", STAGING_STATES)
    .execute();
}

/**
 * stalledStaging is the condition of a job whose staging stopped without an
 * end: still RECEIVING or VALIDATING, with no heartbeat for stallMs (or, with
 * none ever, unchanged for LEGACY_STALL_MS). The sweep selects by it and
 * moveJob checks it again in its UPDATE, so a heartbeat that comes in
 * between keeps the job.
 */
export function stalledStaging(now: Date, stallMs: number) {
  const heartbeatBefore = new Date(now.getTime() - stallMs);
  const unchangedBefore = new Date(now.getTime() - Math.max(stallMs, LEGACY_STALL_MS));
  return (eb: ExpressionBuilder<BulkTables, "bulk_jobs">) =>
    eb.and([
      eb("state", "in", STAGING_STATES),
      eb.or([
        eb("staging_heartbeat_at", "<", heartbeatBefore),
        eb.and([eb("staging_heartbeat_at", "is", null), eb("updated_at", "<", unchangedBefore)]),
      ]),
    ]);
}

/** findStalledStaging lists up to limit jobs of one shard target whose staging stopped (stalledStaging). */
export function findStalledStaging(db: BulkDb, now: Date, stallMs: number, limit: number): Promise<JobRef[]> {
  return db
    .selectFrom("bulk_jobs")
    .select(["merchant_id as merchantId", "job_id as jobId"])
    .where(stalledStaging(now, stallMs))
    .limit(limit)
    .execute();
}

/** findJobByRequestId reads the merchant's job bound to a request_id, if any. */
export function findJobByRequestId(db: BulkDb, merchantId: string, requestId: string): Promise<BulkJobRow | undefined> {
  return db
    .selectFrom("bulk_jobs")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("request_id", "=", requestId)
    .executeTakeFirst();
}

/**
 * claimJobFile records what ingest learnt of the uploaded file and binds the
 * job to its request_id (if any), in one statement, once every byte was
 * read: a job is bound to a request_id only with the content it was given.
 * If another job of the merchant holds the request_id already, nothing is
 * written and that job is returned (the caller compares the two).
 */
export async function claimJobFile(
  db: BulkDb,
  ref: JobRef,
  file: { requestId: string; fileSize: number; contentSha256: string | null },
  now = new Date(),
): Promise<{ claimed: true } | { claimed: false; holder: BulkJobRow }> {
  try {
    await db
      .updateTable("bulk_jobs")
      .set((eb) => ({
        ...(file.requestId === "" ? {} : { request_id: file.requestId }),
        file_size: file.fileSize,
        content_sha256: file.contentSha256,
        updated_at: now,
        version: eb("version", "+", 1),
      }))
      .where("merchant_id", "=", ref.merchantId)
      .where("job_id", "=", ref.jobId)
      .execute();
    return { claimed: true };
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error;
    const holder = await findJobByRequestId(db, ref.merchantId, file.requestId);
    if (!holder) throw error;
    return { claimed: false, holder };
  }
}

/** ChunkCounts are what one chunk adds to its job's counters (negative to take back). */
export type ChunkCounts = Partial<Record<"applied" | "unchanged" | "conflict" | "invalid" | "failed" | "rolledBack", number>>;

const COUNTER_COLUMNS = {
  applied: "applied_items",
  unchanged: "unchanged_items",
  conflict: "conflict_items",
  invalid: "invalid_items",
  failed: "failed_items",
  rolledBack: "rolled_back_items",
} as const;

/**
 * countChunk adds a finished chunk's counts to its job and counts the chunk
 * done (relative updates: the row is locked only from here to commit), and
 * returns the job as it is then, for the caller to decide whether it ended.
 * Every chunk transaction of a job takes this row lock last, so how long it
 * is held is what chunks applied in parallel queue on: the update is
 * deferred (deferred-writes.ts) and travels with the read of the job in one
 * round trip, which leaves that read and the COMMIT inside the lock. (It
 * always matches: a job's row outlives its chunks.)
 */
export async function countChunk(trx: BulkTx, ref: JobRef, counts: ChunkCounts, now: Date, error?: string): Promise<BulkJobRow> {
  const update = trx
    .updateTable("bulk_jobs")
    .set((eb) => ({
      ...Object.fromEntries(
        Object.entries(counts)
          .filter(([, n]) => n !== 0)
          .map(([k, n]) => [COUNTER_COLUMNS[k as keyof ChunkCounts], eb(COUNTER_COLUMNS[k as keyof ChunkCounts], "+", n)]),
      ),
      ...(error === undefined ? {} : { error }),
      chunks_done: eb("chunks_done", "+", 1),
      version: eb("version", "+", 1),
      updated_at: now,
    }))
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .compile();
  await deferWrite(trx, update);
  return (await findJob(trx, ref.merchantId, ref.jobId))!;
}

/** chunksAllDone is a moveJob condition: every chunk of the job is done. */
export const chunksAllDone = (eb: ExpressionBuilder<BulkTables, "bulk_jobs">) => eb("chunks_done", ">=", eb.ref("chunk_count"));

/** markItemsPruned records that retention removed the job's per-item details. */
export async function markItemsPruned(db: BulkDb, ref: JobRef, now: Date): Promise<void> {
  await db
    .updateTable("bulk_jobs")
    .set({ items_pruned_at: now })
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .execute();
}

/** deleteJobRow removes a job's row (a duplicate upload discarded before anything of it was queued). */
export async function deleteJobRow(db: BulkDb, ref: JobRef): Promise<void> {
  await db.deleteFrom("bulk_jobs").where("merchant_id", "=", ref.merchantId).where("job_id", "=", ref.jobId).execute();
}

/** jobStateOf reads only a job's state (the reconciler's check before topping a job up). */
export async function jobStateOf(db: BulkDb, ref: JobRef): Promise<JobState | undefined> {
  const row = await db
    .selectFrom("bulk_jobs")
    .select("state")
    .where("merchant_id", "=", ref.merchantId)
    .where("job_id", "=", ref.jobId)
    .executeTakeFirst();
  return row?.state;
}

/** jobsDueForPruning lists finished jobs older than the cutoff whose items are still kept (a maintenance sweep). */
export function jobsDueForPruning(db: BulkDb, endedBefore: Date, limit: number) {
  return db
    .selectFrom("bulk_jobs")
    .select(["merchant_id", "job_id"])
    .where("ended_at", "<", endedBefore)
    .where("items_pruned_at", "is", null)
    .where("state", "in", [...FINAL_STATES])
    .limit(limit)
    .execute();
}
