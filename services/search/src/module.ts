import { SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import type { ServiceModule } from "@stockroom/common/rpc";
import { registerOutboxMetrics } from "@stockroom/events";
import { createSearchService, type SearchDeps } from "./rpc.ts";
import type { SearchDb } from "./store.ts";

/** SearchModuleOptions are the service's dependencies (rpc.ts SearchDeps) besides the search database. */
export type SearchModuleOptions = Omit<SearchDeps, "db">;

/**
 * searchModule plugs SearchService into an API process. db is the search
 * database, which is not the API process's database: it is migrated by
 * openSearchDatabase, so the module brings no migrations of its own.
 */
export function searchModule(db: SearchDb, options: SearchModuleOptions): ServiceModule {
  return {
    services: [SearchService],
    migrations: [],
    register: (router) => router.service(SearchService, createSearchService({ ...options, db })),
    // The catalog's outbox backlog, as every API process of that database exports it.
    watch: (metrics) => registerOutboxMetrics(metrics.registry, options.catalogDb),
  };
}
