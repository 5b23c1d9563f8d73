import { readInt, type Env } from "@stockroom/common/config.ts";
import { DEFAULT_LIMITS, type IngestLimits } from "./ingest.ts";
import { DEFAULT_QUEUE, type QueueConfig } from "./queue.ts";

/** BulkConfig holds the bulk settings; parseBulkConfig is pure over an env map. */
export interface BulkConfig {
  limits: IngestLimits;
  queue: QueueConfig;
  /** Chunks one worker process applies at once. */
  workerConcurrency: number;
  reconcileEveryMs: number;
}

export function parseBulkConfig(env: Env): BulkConfig {
  return {
    limits: {
      ...DEFAULT_LIMITS,
      maxItems: readInt(env, "BULK_MAX_ITEMS", DEFAULT_LIMITS.maxItems, 1, 100_000_000),
      maxBytes: readInt(env, "BULK_MAX_BYTES", DEFAULT_LIMITS.maxBytes, 1, 64 * 1024 ** 3),
      chunkSize: readInt(env, "BULK_CHUNK_SIZE", DEFAULT_LIMITS.chunkSize, 1, 10_000),
    },
    queue: {
      ...DEFAULT_QUEUE,
      maxAckPending: readInt(env, "BULK_MAX_ACK_PENDING", DEFAULT_QUEUE.maxAckPending, 1, 10_000),
      window: readInt(env, "BULK_JOB_WINDOW", DEFAULT_QUEUE.window, 1, 1000),
    },
    workerConcurrency: readInt(env, "BULK_WORKER_CONCURRENCY", 2, 1, 256),
    reconcileEveryMs: readInt(env, "BULK_RECONCILE_EVERY_MS", 5000, 0, 3_600_000),
  };
}
