import { availableParallelism, hostname } from "node:os";
import { readInt, type Env } from "@stockroom/common";
import { CHUNK_FORMAT } from "./domain.ts";
import { DEFAULT_LIMITS, DEFAULT_STAGING_STALL_MS, type IngestLimits } from "./ingest.ts";
import { DEFAULT_RETENTION, type Retention } from "./prune.ts";
import { DEFAULT_QUEUE, type QueueConfig } from "./queue.ts";
import { slotBucket, type HostSlotOptions } from "./host-slots.ts";

/** BulkConfig holds the bulk settings; parseBulkConfig is pure over an env map. */
export interface BulkConfig {
  limits: IngestLimits;
  queue: QueueConfig;
  /** Chunks one worker process applies at once. */
  workerConcurrency: number;
  reconcileEveryMs: number;
  /** A job still staging with no heartbeat for this long is failed by the workers (BULK_STAGING_STALL_MS, default 60 s). */
  stagingStallMs: number;
  retention: Retention;
  /** How often a worker prunes what outlived its retention; 0 turns it off. */
  pruneEveryMs: number;
  /** How often a worker seals the audit chains (catalog audit.ts); 0 turns it off. */
  sealEveryMs: number;
  /** The newest chunk format a worker applies (BULK_WORKER_MAX_FORMAT; lower only to act as an older release). */
  workerMaxFormat: number;
  /** Worker processes the deployment runs (BULK_WORKERS_DESIRED; 0 = not said): the worker-count alert compares with it. */
  workersDesired: number;
  /**
   * The OS scheduling niceness a worker process raises its threads to at
   * start (BULK_WORKER_NICE, 0 to 19; default 10; 0 leaves it). Chunks are
   * throughput work: on a host they share with the bulk API (whose
   * single-threaded ingest is a job's critical path) or with real-time
   * services, those come first, and more workers do not starve ingest.
   */
  workerNice: number;
  /**
   * Worker processes of one host that apply chunks at once
   * (BULK_WORKER_SLOTS_PER_HOST; default the host's CPUs, 0 = no limit); the
   * others stand by (host-slots.ts). Past one per core, more processes on a
   * host made a job slower, not faster.
   */
  workerSlotsPerHost: number;
  /** What the slots are counted by (BULK_WORKER_HOST; default the hostname; Nomad: the node's id, as containers have hostnames of their own). */
  workerHost: string;
  /** How long a worker that went silent keeps its slot (BULK_WORKER_SLOT_TTL_MS, default 15 s): a standby takes over after it. */
  workerSlotTtlMs: number;
}

export function parseBulkConfig(env: Env): BulkConfig {
  return {
    limits: {
      ...DEFAULT_LIMITS,
      maxItems: readInt(env, "BULK_MAX_ITEMS", DEFAULT_LIMITS.maxItems, 1, 100_000_000),
      maxBytes: readInt(env, "BULK_MAX_BYTES", DEFAULT_LIMITS.maxBytes, 1, 64 * 1024 ** 3),
      chunkSize: readInt(env, "BULK_CHUNK_SIZE", DEFAULT_LIMITS.chunkSize, 1, 10_000),
      chunkFormat: readInt(env, "BULK_CHUNK_FORMAT", CHUNK_FORMAT, 1, CHUNK_FORMAT),
      applyWhileStaging: readInt(env, "BULK_APPLY_WHILE_STAGING", 1, 0, 1) === 1,
      stagingHeartbeatMs: readInt(env, "BULK_STAGING_HEARTBEAT_MS", DEFAULT_LIMITS.stagingHeartbeatMs, 100, 600_000),
    },
    queue: {
      ...DEFAULT_QUEUE,
      stream: env["BULK_STREAM"] ?? DEFAULT_QUEUE.stream,
      subjectPrefix: env["BULK_SUBJECT_PREFIX"] ?? DEFAULT_QUEUE.subjectPrefix,
      durable: env["BULK_DURABLE"] ?? DEFAULT_QUEUE.durable,
      ackWaitMs: readInt(env, "BULK_ACK_WAIT_MS", DEFAULT_QUEUE.ackWaitMs, 1000, 3_600_000),
      maxDeliver: readInt(env, "BULK_MAX_DELIVER", DEFAULT_QUEUE.maxDeliver, 1, 100),
      reconcileAfterMs: readInt(env, "BULK_RECONCILE_AFTER_MS", DEFAULT_QUEUE.reconcileAfterMs, 100, 3_600_000),
      maxAckPending: readInt(env, "BULK_MAX_ACK_PENDING", DEFAULT_QUEUE.maxAckPending, 1, 10_000),
      window: readInt(env, "BULK_JOB_WINDOW", DEFAULT_QUEUE.window, 1, 1000),
    },
    workerConcurrency: readInt(env, "BULK_WORKER_CONCURRENCY", 2, 1, 256),
    reconcileEveryMs: readInt(env, "BULK_RECONCILE_EVERY_MS", 5000, 0, 3_600_000),
    stagingStallMs: readInt(env, "BULK_STAGING_STALL_MS", DEFAULT_STAGING_STALL_MS, 1000, 86_400_000),
    retention: {
      ...DEFAULT_RETENTION,
      idempotencyKeysMs:
        readInt(env, "IDEMPOTENCY_RETENTION_HOURS", DEFAULT_RETENTION.idempotencyKeysMs / 3600_000, 24, 24 * 365) * 3600_000,
      jobItemsMs: readInt(env, "BULK_ITEM_RETENTION_DAYS", DEFAULT_RETENTION.jobItemsMs / 86_400_000, 1, 3650) * 86_400_000,
    },
    pruneEveryMs: readInt(env, "BULK_PRUNE_EVERY_MS", 600_000, 0, 86_400_000),
    sealEveryMs: readInt(env, "AUDIT_SEAL_EVERY_MS", 5000, 0, 3_600_000),
    workersDesired: readInt(env, "BULK_WORKERS_DESIRED", 0, 0, 10_000),
    workerMaxFormat: readInt(env, "BULK_WORKER_MAX_FORMAT", CHUNK_FORMAT, 1, CHUNK_FORMAT),
    workerNice: readInt(env, "BULK_WORKER_NICE", 10, 0, 19),
    workerSlotsPerHost: readInt(env, "BULK_WORKER_SLOTS_PER_HOST", availableParallelism(), 0, 10_000),
    workerHost: hostKey(env["BULK_WORKER_HOST"] || hostname()),
    workerSlotTtlMs: readInt(env, "BULK_WORKER_SLOT_TTL_MS", 15_000, 1000, 3_600_000),
  };
}

/** hostKey makes a host name a KV key token: letters, digits, "-" and "_" kept, anything else "_". */
function hostKey(host: string): string {
  return host.replace(/[^A-Za-z0-9_-]/g, "_");
}

/**
 * hostSlotSettings is what a worker process (worker-main.ts) holds a host
 * slot with, or undefined when the slots are off (0). holder names the
 * process in the slot's entry.
 */
export function hostSlotSettings(c: BulkConfig, holder: string): HostSlotOptions | undefined {
  if (c.workerSlotsPerHost === 0) return undefined;
  return {
    bucket: slotBucket(c.queue.stream),
    host: c.workerHost,
    slots: c.workerSlotsPerHost,
    ttlMs: c.workerSlotTtlMs,
    holder,
  };
}

/** workerSettings picks what startBulkWorker takes from the settings (its process adds db, nats, log and metrics). */
export function workerSettings(c: BulkConfig) {
  return {
    queue: c.queue,
    concurrency: c.workerConcurrency,
    reconcileEveryMs: c.reconcileEveryMs,
    stagingStallMs: c.stagingStallMs,
    pruneEveryMs: c.pruneEveryMs,
    retention: c.retention,
    sealEveryMs: c.sealEveryMs,
    maxFormat: c.workerMaxFormat,
  };
}
