import type { CatalogDb } from "@stockroom/catalog";
import { SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import type { ServiceModule } from "@stockroom/common/rpc";
import { registerOutboxMetrics } from "@stockroom/events";
import type { ProjectionLag } from "./projector.ts";
import { createSearchService } from "./rpc.ts";
import type { SearchDb } from "./store.ts";

export interface SearchModuleOptions {
  /** The catalog's database (the API process's own), read by ReindexProducts. */
  catalogDb: CatalogDb;
  /** Reads the projector's lag for GetProjectionLag (projector.ts projectionLag). */
  lag?: () => Promise<ProjectionLag>;
  /** Products ReindexProducts reads and reconciles at a time (default 500). */
  reindexPageSize?: number;
}

/**
 * searchModule plugs SearchService into an API process. db is the search
 * database, which is not the API process's database: it is migrated by
 * openSearchDatabase, so the module brings no migrations of its own.
 */
export function searchModule(db: SearchDb, options: SearchModuleOptions): ServiceModule {
  return {
    services: [SearchService],
    migrations: [],
    register: (router) =>
      router.service(
        SearchService,
        createSearchService({ db, catalogDb: options.catalogDb, lag: options.lag, reindexPageSize: options.reindexPageSize }),
      ),
    // The catalog's outbox backlog, as every API process of that database exports it.
    watch: (metrics) => registerOutboxMetrics(metrics.registry, options.catalogDb),
  };
}
