import { consumeWorkQueue, type NatsDeps } from "@stockroom/common/nats.ts";
import type { Logger } from "@stockroom/common/log.ts";
import { applyChunk, failChunk, type BulkDb } from "./apply.ts";
import { failRollbackChunk, rollbackChunk } from "./rollback.ts";
import { decodeChunkMessage, ensureChunkQueue, reconcile, topUp, type QueueConfig } from "./queue.ts";

export interface BulkWorkerDeps {
  db: BulkDb;
  nats: NatsDeps;
  queue: QueueConfig;
  log: Logger;
  /** Chunks this process applies at once. */
  concurrency: number;
  /** How often this process runs the reconciler; 0 turns it off. */
  reconcileEveryMs: number;
}

export interface BulkWorker {
  stop(): Promise<void>;
}

/**
 * startBulkWorker applies chunks from the shared durable consumer: any number
 * of processes can run it. Each applied (or finally failed) chunk publishes
 * its job's next chunk. A failing chunk is retried with backoff and, after
 * maxDeliver attempts, its items are marked FAILED so the job still ends.
 */
export async function startBulkWorker(deps: BulkWorkerDeps): Promise<BulkWorker> {
  const { db, nats, queue, log } = deps;
  await ensureChunkQueue(nats.jsm, queue);
  const consumer = consumeWorkQueue(
    nats.js,
    { stream: queue.stream, durable: queue.durable, concurrency: deps.concurrency, log },
    async (msg) => {
      const chunk = decodeChunkMessage(msg.data);
      const result = await applyChunk(db, chunk);
      if (!result.noop) log.info("chunk applied", { jobId: chunk.jobId, chunkNo: chunk.chunkNo, ...result.counts, jobState: result.jobState });
      else if (!(await rollbackChunk(db, chunk)).noop) log.info("chunk rolled back", { jobId: chunk.jobId, chunkNo: chunk.chunkNo });
      await topUp(db, nats, queue, chunk);
    },
    async (msg, error) => {
      const chunk = decodeChunkMessage(msg.data);
      log.error("chunk failed after every delivery", { jobId: chunk.jobId, chunkNo: chunk.chunkNo, error });
      const reason = error instanceof Error ? error.message : String(error);
      await failChunk(db, chunk, reason);
      await failRollbackChunk(db, chunk, reason);
      await topUp(db, nats, queue, chunk);
    },
  );
  let sweeping: Promise<unknown> = Promise.resolve();
  const timer =
    deps.reconcileEveryMs > 0
      ? setInterval(() => {
          sweeping = reconcile(db, nats, queue).then(
            (r) => (r.republished > 0 || r.toppedUp > 0) && log.warn("reconciler re-published chunks", r),
            (error: unknown) => log.error("reconcile failed", { error }),
          );
        }, deps.reconcileEveryMs)
      : undefined;
  return {
    async stop() {
      if (timer) clearInterval(timer);
      await consumer.stop();
      await sweeping;
    },
  };
}
