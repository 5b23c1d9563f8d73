import type { Kysely } from "kysely";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import type { ServiceModule } from "@stockroom/common/app.ts";
import { createBulkReadMethods } from "./rpc-read.ts";
import { bulkMigrations } from "./store.ts";

/**
 * bulkModule plugs BulkJobService into an API process. Uploads, resumable
 * parts and rollback are not wired yet: those calls answer UNIMPLEMENTED.
 */
export function bulkModule(db: Kysely<any>, options: { watchIntervalMs?: number } = {}): ServiceModule {
  return {
    services: [BulkJobService],
    migrations: [bulkMigrations],
    register: (router) => router.service(BulkJobService, { ...createBulkReadMethods({ db, ...options }) }),
  };
}
