import { trace } from "@opentelemetry/api";
import { consumeWorkQueue, type NatsDeps, type Pass, type WorkMessage } from "@stockroom/common/nats";
import { sealAuditChains, type SealOptions } from "@stockroom/catalog";
import { type Logger, type Metrics, untraced } from "@stockroom/common/observe";
import { every, taskFailures, unavailableBackend } from "@stockroom/common";
import { applyChunk, failChunk, type ChunkOutcome } from "./apply.ts";
import { CHUNK_FORMAT, FINAL_STATES } from "./domain.ts";
import { bulkMetrics } from "./metrics.ts";
import type { BulkDb } from "./store.ts";
import { DEFAULT_RETENTION, prune, type Retention } from "./prune.ts";
import { DEFAULT_STAGING_STALL_MS, failStalledStaging } from "./ingest.ts";
import { failRollbackChunk, rollbackChunk } from "./rollback.ts";
import { type ChunkMessage, decodeChunkMessage, ensureChunkQueue, handBack, reconcile, topUp, type QueueConfig } from "./queue.ts";
import { acquireHostSlot, openSlotBucket, type HostSlotOptions } from "./host-slots.ts";

export interface BulkWorkerDeps {
  db: BulkDb;
  nats: NatsDeps;
  queue: QueueConfig;
  log: Logger;
  /** Chunks this process applies at once. */
  concurrency: number;
  /**
   * The newest chunk format this worker applies (default CHUNK_FORMAT).
   * Lower only to act as an older release would (BULK_WORKER_MAX_FORMAT):
   * chunks of a newer format are passed on to other workers, never applied.
   */
  maxFormat?: number;
  /** How often this process runs the reconciler (and fails jobs whose staging stopped); 0 turns it off. */
  reconcileEveryMs: number;
  /** A job still staging with no heartbeat for this long is failed (failStalledStaging; default DEFAULT_STAGING_STALL_MS). */
  stagingStallMs?: number;
  /** How often this process prunes expired rows (prune.ts); 0 or absent turns it off. */
  pruneEveryMs?: number;
  retention?: Retention;
  /** Item outcomes, chunk latency, reconciler re-publishes and queue lag go here when given. */
  metrics?: Metrics;
  /** How often this process seals the audit chains (catalog audit.ts); 0 or absent turns it off. */
  sealEveryMs?: number;
  seal?: SealOptions;
  /**
   * Apply only while holding one of the host's slots (host-slots.ts): at most
   * that many workers of a host apply at once, the others stand by. Absent:
   * always apply (workers inside `npm start`'s process, tests).
   */
  hostSlots?: HostSlotOptions;
}

export interface BulkWorker {
  stop(): Promise<void>;
}

/**
 * startBulkWorker applies chunks from the shared durable consumer: any number
 * of processes can run it. Each applied (or finally failed) chunk publishes
 * its job's next chunk. A failing chunk is retried with backoff and, after
 * maxDeliver attempts, its items are marked FAILED so the job still ends;
 * unless its last attempt failed because the database or NATS could not be
 * reached: then it is left queued for the reconciler to publish again.
 */
export async function startBulkWorker(deps: BulkWorkerDeps): Promise<BulkWorker> {
  const { db, nats, queue, log } = deps;
  await ensureChunkQueue(nats.jsm, queue);
  deps.metrics?.watchConsumer(nats.jsm, queue.stream, queue.durable);
  const metrics = deps.metrics && bulkMetrics(deps.metrics.registry);
  metrics?.workerConcurrency.set({ stream: queue.stream }, deps.concurrency);
  metrics?.workerActive.set({ stream: queue.stream }, deps.hostSlots ? 0 : 1);

  /** counted records a finished chunk on its span (the consumer's "process" span) and in the metrics. */
  const counted = (outcome: ChunkOutcome, kind: "apply" | "fail") => {
    const items = { ...outcome.counts, ...(outcome.failed ? { failed: outcome.failed } : {}) };
    trace.getActiveSpan()?.setAttributes({
      "stockroom.bulk.outcome": outcome.noop ? "noop" : kind === "fail" ? "failed" : "applied",
      ...Object.fromEntries(Object.entries(items).map(([k, n]) => [`stockroom.bulk.items.${k}`, n])),
      ...(outcome.jobState ? { "stockroom.bulk.job_state": outcome.jobState } : {}),
    });
    if (!metrics || outcome.noop) return;
    for (const [k, n] of Object.entries(items)) if (n > 0) metrics.items.inc({ outcome: k }, n);
    if (outcome.jobState && FINAL_STATES.has(outcome.jobState)) metrics.jobsFinished.inc({ state: outcome.jobState });
  };

  const maxFormat = deps.maxFormat ?? CHUNK_FORMAT;
  /**
   * passOn leaves a chunk of a format this worker does not know to a newer
   * worker: offered again after a short while, and on its last allowed
   * delivery re-published as a new attempt (a fresh delivery count), so it
   * is never failed as poison while it waits for one.
   */
  const passOn = async (msg: WorkMessage, chunk: ChunkMessage): Promise<Pass | undefined> => {
    metrics?.formatPassed.inc({ format: String(chunk.format) });
    if (msg.deliveriesLeft > 1) {
      return { pass: { delayMs: 500 + Math.round(Math.random() * 1000), reason: `chunk format ${chunk.format} > ${maxFormat}` } };
    }
    if (await handBack(db, nats, queue, chunk, null)) log.warn("handed back a chunk of a newer format", { ...chunk, maxFormat });
    return undefined;
  };

  const consume = () =>
    consumeWorkQueue(
      nats,
      // If failing a poisoned chunk fails too, the chunk stays queued in MySQL; a message left in the
      // stream would look alive to the reconciler forever, so it goes and the reconciler re-publishes.
      { stream: queue.stream, durable: queue.durable, concurrency: deps.concurrency, log, whenPoisonFails: "terminate" },
      async (msg) => {
        const chunk = decodeChunkMessage(msg.data);
        trace.getActiveSpan()?.setAttributes({
          "stockroom.merchant_id": chunk.merchantId,
          "stockroom.bulk.job_id": chunk.jobId,
          "stockroom.bulk.chunk_no": chunk.chunkNo,
          "stockroom.bulk.attempt": chunk.attempt,
          "stockroom.bulk.chunk_format": chunk.format,
        });
        if (chunk.format > maxFormat) return passOn(msg, chunk);
        const started = performance.now();
        const seconds = () => (performance.now() - started) / 1000;
        let kind: "apply" | "rollback" = "apply";
        try {
          const result = await applyChunk(db, chunk, new Date(), maxFormat);
          if (result.newerFormat !== undefined) return passOn(msg, { ...chunk, format: result.newerFormat });
          counted(result, "apply");
          if (!result.noop) {
            metrics?.chunkDuration.observe({ kind, result: "applied" }, seconds());
            log.info("chunk applied", { jobId: chunk.jobId, chunkNo: chunk.chunkNo, ...result.counts, jobState: result.jobState });
          } else {
            kind = "rollback";
            const rolled = await rollbackChunk(db, chunk);
            metrics?.chunkDuration.observe(
              { kind: rolled.noop ? "apply" : "rollback", result: rolled.noop ? "noop" : "applied" },
              seconds(),
            );
            if (!rolled.noop) {
              trace.getActiveSpan()?.setAttributes({
                "stockroom.bulk.outcome": "rolled_back",
                "stockroom.bulk.items.rolled_back": rolled.rolledBack,
                "stockroom.bulk.items.conflict": rolled.conflict,
              });
              metrics?.rollbackItems.inc({ outcome: "rolled_back" }, rolled.rolledBack);
              metrics?.rollbackItems.inc({ outcome: "conflict" }, rolled.conflict);
              log.info("chunk rolled back", { jobId: chunk.jobId, chunkNo: chunk.chunkNo });
            }
          }
        } catch (error) {
          metrics?.chunkDuration.observe({ kind, result: "error" }, seconds());
          throw error;
        }
        await topUp(db, nats, queue, chunk);
      },
      async (msg, error) => {
        const chunk = decodeChunkMessage(msg.data);
        if (unavailableBackend(error)) {
          // Not the chunk's fault: the database (or NATS) was away for all its deliveries. Its items are not failed;
          // the message goes, the chunk stays queued in the ledger, and the reconciler publishes it again.
          log.warn("chunk's last delivery failed in an outage; the reconciler will publish it again", {
            jobId: chunk.jobId,
            chunkNo: chunk.chunkNo,
            error,
          });
          return;
        }
        log.error("chunk failed after every delivery", { jobId: chunk.jobId, chunkNo: chunk.chunkNo, error });
        const reason = error instanceof Error ? error.message : String(error);
        const result = await failChunk(db, chunk, reason);
        counted(result, "fail");
        await failRollbackChunk(db, chunk, reason);
        await topUp(db, nats, queue, chunk);
      },
    );
  const applying = deps.hostSlots ? await standBy(deps.hostSlots) : consume();
  const maintenance = [
    // Untraced: a sweep every few seconds would be a root trace each; a chunk it
    // re-publishes is still traced, in its job's trace.
    every(
      deps.reconcileEveryMs,
      () =>
        untraced(() => reconcile(db, nats, queue)).then(
          (r) => {
            metrics?.reconcileRuns.inc({ result: "ok" });
            metrics?.republished.inc(r.republished);
            metrics?.toppedUp.inc(r.toppedUp);
            // A re-publish means a message was lost or a worker died holding it; top-ups are routine.
            if (r.republished > 0) log.warn("reconciler re-published lost chunks", r);
            else if (r.toppedUp > 0) log.info("reconciler topped up job windows", r);
          },
          (error: unknown) => {
            metrics?.reconcileRuns.inc({ result: "error" });
            throw error;
          },
        ),
      taskFailures(log, "reconcile"),
    ),
    every(
      deps.reconcileEveryMs,
      () =>
        untraced(() => failStalledStaging(db, deps.stagingStallMs ?? DEFAULT_STAGING_STALL_MS)).then(
          (failed) => failed > 0 && log.warn("failed jobs whose staging stopped without an end", { failed }),
        ),
      taskFailures(log, "staging sweep"),
    ),
    every(
      deps.pruneEveryMs,
      () =>
        prune(db, deps.retention ?? DEFAULT_RETENTION).then(
          (r) => Object.values(r).some((n) => n > 0) && log.info("pruned expired rows", { ...r }),
        ),
      taskFailures(log, "prune"),
    ),
    // stop() aborts a seal between batches: a large backlog must not hold up shutdown.
    every(
      deps.sealEveryMs,
      (signal) =>
        untraced(() => sealAuditChains(db, { ...deps.seal, signal })).then((r) => {
          const { failed, ...counts } = r;
          if (counts.sealed > 0) log.info("sealed audit entries", counts);
          for (const f of failed) log.error("audit seal failed for a merchant", { merchantId: f.merchantId, error: f.error });
        }),
      taskFailures(log, "audit seal"),
    ),
  ];
  return {
    async stop() {
      const stopped = Promise.all(maintenance.map((m) => m.stop()));
      await applying.stop();
      await stopped;
    },
  };

  /**
   * standBy applies chunks only while this worker holds one of its host's
   * slots (host-slots.ts): it waits for a free one, consumes while it holds
   * it, and waits again if it loses it (what it has in hand finishes).
   */
  async function standBy(options: HostSlotOptions): Promise<{ stop(): Promise<void> }> {
    const kv = await openSlotBucket(nats, options);
    const stopping = new AbortController();
    const stopped = new Promise<void>((resolve) => stopping.signal.addEventListener("abort", () => resolve(), { once: true }));
    log.info("bulk worker waiting for a host slot", { host: options.host, slots: options.slots });
    const loop = (async () => {
      while (!stopping.signal.aborted) {
        const slot = await acquireHostSlot(kv, options, stopping.signal).catch(() => undefined);
        if (!slot) return;
        log.info("bulk worker took a host slot: applying chunks", { slot: slot.key });
        metrics?.workerActive.set({ stream: queue.stream }, 1);
        const consumer = consume();
        await Promise.race([slot.lost, stopped]);
        metrics?.workerActive.set({ stream: queue.stream }, 0);
        await consumer.stop();
        await slot.release();
        if (!stopping.signal.aborted) log.warn("bulk worker lost its host slot: standing by", { slot: slot.key });
      }
    })();
    return {
      async stop() {
        stopping.abort();
        await loop;
      },
    };
  }
}
