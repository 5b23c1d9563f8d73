import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import type { ServiceModule } from "@stockroom/common/rpc";
import { eventsMigrations, registerOutboxMetrics } from "@stockroom/events";
import type { Metrics } from "@stockroom/common/observe";
import type { NatsDeps } from "@stockroom/common/nats";
import { DEFAULT_LIMITS, type IngestLimits } from "./ingest.ts";
import { DEFAULT_QUEUE, type QueueConfig } from "./queue.ts";
import { createBulkJobMethods } from "./rpc-jobs.ts";
import { createBulkUploadMethods } from "./rpc-uploads.ts";
import { bulkMetrics } from "./metrics.ts";
import { bulkMigrations, type BulkDb } from "./store.ts";

export interface BulkModuleOptions {
  /** Without NATS, staged chunks wait for a worker's reconciler to publish them. */
  nats?: NatsDeps;
  queue?: QueueConfig;
  limits?: IngestLimits;
  uploadTtlMs?: number;
  watchIntervalMs?: number;
  /** Aborted when the process drains: open WatchBulkJob streams end instead of holding up the drain (the SDK reconnects). */
  shutdown?: AbortSignal;
  /** The process's metrics (startApi's ModuleDeps): staging counts its invalid lines there. */
  metrics?: Metrics;
  /**
   * Worker processes the deployment runs (BULK_WORKERS_DESIRED; 0 = not said). The API exports it, not the
   * workers: the worker-count alert must still know how many are wanted when every worker is gone.
   */
  workersDesired?: number;
}

/** bulkModule plugs BulkJobService into an API process. */
export function bulkModule(db: BulkDb, options: BulkModuleOptions = {}): ServiceModule {
  const queue = options.queue ?? DEFAULT_QUEUE;
  const limits = options.limits ?? DEFAULT_LIMITS;
  return {
    services: [BulkJobService],
    migrations: [bulkMigrations, eventsMigrations],
    register: (router) =>
      router.service(BulkJobService, {
        ...createBulkJobMethods({ db, nats: options.nats, queue, watchIntervalMs: options.watchIntervalMs, shutdown: options.shutdown }),
        ...createBulkUploadMethods({
          db,
          nats: options.nats,
          queue,
          limits,
          uploadTtlMs: options.uploadTtlMs ?? 24 * 3600_000,
          metrics: options.metrics,
        }),
      }),
    watch: (metrics) => {
      registerOutboxMetrics(metrics.registry, db);
      const bulk = bulkMetrics(metrics.registry);
      if (options.workersDesired) bulk.workersDesired.set({ stream: queue.stream }, options.workersDesired);
      // The queue lag comes from a process that stays up, not only from the workers that drain the queue:
      // with every worker dead the chunks still pile up, and the alert on them must still see it.
      if (options.nats) metrics.watchConsumer(options.nats.jsm, queue.stream, queue.durable);
    },
  };
}
