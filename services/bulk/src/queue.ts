/**
 * Chunks on JetStream. Each chunk has its own subject,
 * bulk.chunk.<merchant>.<job>.<chunk>, on one work-queue stream, so "is there
 * a live message for this chunk" is a direct lookup. MySQL stays the source of
 * truth (nats-server does not fsync every message): a chunk is claimed for
 * publishing in the ledger first, and a reconciler re-publishes any chunk
 * still queued whose message is gone, under a new attempt number (JetStream
 * remembers a Nats-Msg-Id for its duplicate window even after the ack).
 *
 * Fairness: a job keeps at most `window` chunks in the stream; each finished
 * chunk publishes the job's next one. A small job's chunks therefore queue
 * behind a few chunks of a large job, not behind all of them.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { trace } from "@opentelemetry/api";
import { forEachShard } from "@stockroom/common/db";
import { ensureWorkQueue, publishWithId, type NatsDeps } from "@stockroom/common/nats";
import { restoreTraceContext } from "@stockroom/common/observe";
import {
  claimForPublish,
  claimNextAttempt,
  countPublished,
  jobsWithUnpublished,
  nextUnpublished,
  releaseClaim,
  stalePublished,
} from "./chunks.ts";
import { WORKING_STATES, type ChunkRef } from "./domain.ts";
import { jobStateOf } from "./jobs.ts";
import type { BulkDb } from "./store.ts";

export interface QueueConfig {
  stream: string;
  /** Subject prefix; chunks publish on <prefix>.<merchant>.<job>.<chunk>. */
  subjectPrefix: string;
  durable: string;
  ackWaitMs: number;
  maxDeliver: number;
  /** Messages handed out and not yet acked, across all workers (backpressure). */
  maxAckPending: number;
  /** Chunks of one job in the stream at once. */
  window: number;
  /** A queued chunk whose message vanished is re-published after this long. */
  reconcileAfterMs: number;
}

export const DEFAULT_QUEUE: QueueConfig = {
  stream: "BULK_CHUNKS",
  subjectPrefix: "bulk.chunk",
  durable: "bulk-workers",
  ackWaitMs: 30_000,
  maxDeliver: 5,
  maxAckPending: 64,
  window: 4,
  reconcileAfterMs: 30_000,
};

/**
 * ChunkMessage is the payload of a chunk message. format is the chunk's
 * format (domain.ts CHUNK_FORMAT). A format-1 chunk is sent as v 1, which
 * every release reads; a newer format as v 2, which releases from before
 * chunk formats refuse to decode, so they never apply it.
 */
export interface ChunkMessage extends ChunkRef {
  v: 1 | 2;
  attempt: number;
  format: number;
}

export function ensureChunkQueue(jsm: JetStreamManager, q: QueueConfig): Promise<void> {
  return ensureWorkQueue(jsm, {
    stream: q.stream,
    subjects: [`${q.subjectPrefix}.>`],
    durable: q.durable,
    ackWaitMs: q.ackWaitMs,
    maxDeliver: q.maxDeliver,
    maxAckPending: q.maxAckPending,
  });
}

export function chunkSubject(q: QueueConfig, ref: ChunkRef): string {
  return `${q.subjectPrefix}.${ref.merchantId}.${ref.jobId}.${ref.chunkNo}`;
}

export function decodeChunkMessage(data: Uint8Array): ChunkMessage {
  const m = JSON.parse(new TextDecoder().decode(data)) as Partial<ChunkMessage>;
  const format = m.v === 1 ? 1 : m.v === 2 && Number.isInteger(m.format) ? m.format : undefined;
  if (format === undefined || typeof m.merchantId !== "string" || typeof m.jobId !== "string" || typeof m.chunkNo !== "number") {
    throw new Error(`unsupported chunk message ${JSON.stringify(m).slice(0, 200)}`);
  }
  return { ...(m as ChunkMessage), format };
}

/**
 * publishChunk publishes one chunk in its job's trace (the upload call's,
 * stored with the job), whoever publishes it: the worker's span or the
 * reconciler that caused the publish is linked, not the parent, so one job
 * is one trace with a publish and a worker span per chunk.
 */
async function publishChunk(
  nats: NatsDeps,
  q: QueueConfig,
  ref: ChunkRef,
  chunk: { attempt: number; format: number; trace_context: string | null },
): Promise<void> {
  const { attempt, format } = chunk;
  const message: ChunkMessage = { v: format === 1 ? 1 : 2, ...ref, attempt, format };
  await publishWithId(
    nats.js,
    chunkSubject(q, ref),
    new TextEncoder().encode(JSON.stringify(message)),
    `${ref.jobId}:${ref.chunkNo}:${attempt}`,
    { "stockroom-merchant": ref.merchantId, "stockroom-job": ref.jobId },
    {
      parent: restoreTraceContext(chunk.trace_context),
      destinationTemplate: `${q.subjectPrefix}.{merchant}.{job}.{chunk}`,
      attributes: {
        "stockroom.merchant_id": ref.merchantId,
        "stockroom.bulk.job_id": ref.jobId,
        "stockroom.bulk.chunk_no": ref.chunkNo,
        "stockroom.bulk.attempt": attempt,
        "stockroom.bulk.chunk_format": format,
      },
    },
  );
}

/**
 * topUp publishes a job's next unpublished chunks until `window` of them are
 * in flight. Each chunk is claimed in MySQL first (published_at set where it
 * was NULL), so concurrent callers never publish one chunk twice; a crash
 * between claim and publish is healed by the reconciler. Callers race: every
 * worker that finishes a chunk tops its job up, and (while a job is staged)
 * so does ingest. A caller that loses a claim looks again, with the window
 * counted afresh, instead of leaving its free slots empty: otherwise
 * simultaneous finishes shrink the job's chunks in flight below the window,
 * more often the more workers there are.
 */
export async function topUp(db: BulkDb, nats: NatsDeps, q: QueueConfig, job: { merchantId: string; jobId: string }): Promise<number> {
  let published = 0;
  for (let round = 0; round < TOP_UP_ROUNDS; round++) {
    const free = q.window - (await countPublished(db, job));
    if (free <= 0) break;
    const next = await nextUnpublished(db, job, free);
    let lost = false;
    for (const chunk of next) {
      const ref = { ...job, chunkNo: chunk.chunk_no };
      if (!(await claimForPublish(db, ref))) {
        lost = true;
        continue;
      }
      try {
        await publishChunk(nats, q, ref, chunk);
      } catch (error) {
        // The message may not have reached the stream (a publish that timed out under load did not, in
        // tests): hand the chunk back so the next top-up publishes it instead of waiting for the
        // reconciler. A copy that did get stored has the same message id and is dropped as a duplicate.
        await releaseClaim(db, ref, chunk.attempt);
        throw error;
      }
      published++;
    }
    if (!lost) break;
  }
  return published;
}

/**
 * topUpOrLeave tops a job up for a call whose job is already committed (an
 * upload, a chunk staged while applying, a rollback): a publish that fails
 * (NATS down) must not turn what was accepted into an error. The chunks wait
 * in the ledger for a worker's top-up or the reconciler; the failure is an
 * event on the active span.
 */
export async function topUpOrLeave(db: BulkDb, nats: NatsDeps, q: QueueConfig, job: { merchantId: string; jobId: string }): Promise<void> {
  try {
    await topUp(db, nats, q, job);
  } catch (error) {
    trace.getActiveSpan()?.addEvent("chunks left to the reconciler", {
      "exception.message": error instanceof Error ? error.message : String(error),
    });
  }
}

/** TOP_UP_ROUNDS bounds how often one top-up looks again after losing claims to concurrent callers. */
const TOP_UP_ROUNDS = 3;

/**
 * reconcile heals what a crash or a lost message left behind: every queued
 * chunk published more than reconcileAfterMs ago whose message is no longer
 * in the stream is re-published under attempt + 1, and every unfinished job
 * is topped up to its window. It is a maintenance sweep over all merchants,
 * run against each shard target in turn (forEachShard: on Vitess each shard
 * on its own, no scatter; one target on MySQL/MariaDB).
 */
export async function reconcile(
  db: BulkDb,
  nats: NatsDeps,
  q: QueueConfig,
  now = new Date(),
): Promise<{ republished: number; toppedUp: number }> {
  const perShard = await forEachShard(db, (shardDb) => reconcileShard(shardDb, nats, q, now));
  return perShard.reduce((sum, r) => ({ republished: sum.republished + r.republished, toppedUp: sum.toppedUp + r.toppedUp }), {
    republished: 0,
    toppedUp: 0,
  });
}

/** reconcileShard reconciles the chunks of one shard target (their merchants live there: every statement runs on it). */
async function reconcileShard(db: BulkDb, nats: NatsDeps, q: QueueConfig, now: Date): Promise<{ republished: number; toppedUp: number }> {
  const stale = await stalePublished(db, new Date(now.getTime() - q.reconcileAfterMs), 500);
  let republished = 0;
  for (const c of stale) {
    const ref = { merchantId: c.merchant_id, jobId: c.job_id, chunkNo: c.chunk_no };
    if (await hasLiveMessage(nats.jsm, q, ref)) continue;
    if (!(await claimNextAttempt(db, ref, c.attempt, now))) continue;
    await publishChunk(nats, q, ref, { ...c, attempt: c.attempt + 1 });
    republished++;
  }
  let toppedUp = 0;
  for (const j of await jobsWithUnpublished(db, 500)) {
    const job = { merchantId: j.merchant_id, jobId: j.job_id };
    const state = await jobStateOf(db, job);
    if (state && WORKING_STATES.includes(state)) toppedUp += await topUp(db, nats, q, job);
  }
  return { republished, toppedUp };
}

/**
 * handBack re-publishes a pending chunk under its next attempt, a message
 * with a fresh delivery count: a worker that cannot apply the chunk's format
 * hands it back on its last allowed delivery, so it is never given up as
 * poison but waits for a worker that knows the format. It tells whether this
 * caller moved the chunk on (false: it is done, or another attempt has it).
 */
export async function handBack(
  db: BulkDb,
  nats: NatsDeps,
  q: QueueConfig,
  chunk: ChunkMessage,
  traceContext: string | null,
  now = new Date(),
): Promise<boolean> {
  if (!(await claimNextAttempt(db, chunk, chunk.attempt, now))) return false;
  await publishChunk(nats, q, chunk, { attempt: chunk.attempt + 1, format: chunk.format, trace_context: traceContext });
  return true;
}

async function hasLiveMessage(jsm: JetStreamManager, q: QueueConfig, ref: ChunkRef): Promise<boolean> {
  try {
    return (await jsm.streams.getMessage(q.stream, { last_by_subj: chunkSubject(q, ref) })) !== null;
  } catch (error) {
    if (/not found|no message/i.test(String((error as Error).message))) return false;
    throw error;
  }
}

/** countLiveChunks is for tests and metrics: chunk messages in the stream. */
export async function countLiveChunks(jsm: JetStreamManager, q: QueueConfig): Promise<number> {
  const info = await jsm.streams.info(q.stream);
  return info.state.messages;
}
