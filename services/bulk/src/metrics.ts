/**
 * The bulk package's Prometheus series, added to the process's registry
 * (common's createMetrics makes it) by whatever part of bulk runs there: the
 * API module (staging counts invalid lines; the desired worker count) and the workers.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

const CHUNK_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

export interface BulkMetrics {
  /** Bulk items by outcome: from chunks, and invalid lines from staging. */
  items: Counter<"outcome">;
  /** Items of rolled-back chunks: rolled_back, or conflict (changed since the job). */
  rollbackItems: Counter<"outcome">;
  /** One chunk's transaction: kind apply|rollback, result applied|noop|error (a try that threw; it is retried). */
  chunkDuration: Histogram<"kind" | "result">;
  /** Jobs whose last chunk finished in this process, by final state. */
  jobsFinished: Counter<"state">;
  /** Chunks the reconciler published again because their message had vanished. */
  republished: Counter;
  /** Chunks the reconciler published to refill a job's window. */
  toppedUp: Counter;
  reconcileRuns: Counter<"result">;
  /** Chunk deliveries this worker passed on because their format is newer than it applies (a rolling deploy in progress). */
  formatPassed: Counter<"format">;
  /** This process's chunk concurrency, by stream: one series per running worker, so count() is the worker count. */
  workerConcurrency: Gauge<"stream">;
  /** 1 while this worker applies chunks, 0 while it stands by for a host slot (host-slots.ts); always 1 without slots. */
  workerActive: Gauge<"stream">;
  /** The worker count the deployment wants (BULK_WORKERS_DESIRED), by stream, for the worker-count alert: the bulk API exports it, so it outlives the workers. */
  workersDesired: Gauge<"stream">;
}

const byRegistry = new WeakMap<Registry, BulkMetrics>();

/** bulkMetrics returns the bulk series of a registry, adding them the first time (several parts of one process share them). */
export function bulkMetrics(registry: Registry): BulkMetrics {
  const known = byRegistry.get(registry);
  if (known) return known;
  const registers = [registry];
  const m: BulkMetrics = {
    items: new Counter({
      name: "stockroom_bulk_items_total",
      help: "Bulk items by outcome: applied, unchanged, conflict, invalid (from chunks, and lines invalid at staging), failed (poison chunks).",
      labelNames: ["outcome"],
      registers,
    }),
    rollbackItems: new Counter({
      name: "stockroom_bulk_rollback_items_total",
      help: "Items of rolled-back chunks: rolled_back, or conflict (changed since the job).",
      labelNames: ["outcome"],
      registers,
    }),
    chunkDuration: new Histogram({
      name: "stockroom_bulk_chunk_duration_seconds",
      help: "Time to apply (or roll back) one chunk, its one transaction included.",
      labelNames: ["kind", "result"],
      buckets: CHUNK_BUCKETS,
      registers,
    }),
    jobsFinished: new Counter({
      name: "stockroom_bulk_jobs_finished_total",
      help: "Bulk jobs whose last chunk finished in this process, by final state.",
      labelNames: ["state"],
      registers,
    }),
    republished: new Counter({
      name: "stockroom_bulk_reconciler_republished_total",
      help: "Chunks re-published by the reconciler because their message had vanished.",
      registers,
    }),
    toppedUp: new Counter({
      name: "stockroom_bulk_reconciler_topped_up_total",
      help: "Chunks the reconciler published to refill a job's window.",
      registers,
    }),
    reconcileRuns: new Counter({
      name: "stockroom_bulk_reconciler_runs_total",
      help: "Reconciler sweeps by result (ok, error).",
      labelNames: ["result"],
      registers,
    }),
    formatPassed: new Counter({
      name: "stockroom_bulk_chunks_passed_total",
      help: "Chunk deliveries passed on to newer workers because their format is newer than this worker applies, by format.",
      labelNames: ["format"],
      registers,
    }),
    workerConcurrency: new Gauge({
      name: "stockroom_bulk_worker_concurrency",
      help: "Chunks this worker process applies at once (one series per running worker).",
      labelNames: ["stream"],
      registers,
    }),
    workerActive: new Gauge({
      name: "stockroom_bulk_worker_active",
      help: "1 while this worker process applies chunks, 0 while it stands by for one of its host's slots.",
      labelNames: ["stream"],
      registers,
    }),
    workersDesired: new Gauge({
      name: "stockroom_bulk_workers_desired",
      help: "Worker processes the deployment runs (BULK_WORKERS_DESIRED).",
      labelNames: ["stream"],
      registers,
    }),
  };
  byRegistry.set(registry, m);
  return m;
}
