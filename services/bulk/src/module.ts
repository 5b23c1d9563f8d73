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
  /** The process's metrics (startApi's ModuleDeps): staging counts its invalid lines there. */
  metrics?: Metrics;
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
        ...createBulkJobMethods({ db, nats: options.nats, queue, watchIntervalMs: options.watchIntervalMs }),
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
      bulkMetrics(metrics.registry);
    },
  };
}
