import type { Kysely } from "kysely";
import { Counter } from "prom-client";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import type { ServiceModule } from "@stockroom/common/rpc";
import { eventsMigrations, registerOutboxMetrics } from "@stockroom/events";
import type { ProjectionWaiter } from "./domain.ts";
import { createCatalogService } from "./rpc.ts";
import { catalogMigrations, type CatalogTables } from "./store.ts";

export interface CatalogModuleOptions {
  /** Serves UpdateProduct's wait_for_search (the search projection's waiter); refused without it. */
  searchWaiter?: ProjectionWaiter;
}

/** catalogModule plugs the catalog into an API process. */
export function catalogModule(db: Kysely<CatalogTables>, options: CatalogModuleOptions = {}): ServiceModule {
  let fromKnownState: Counter<"outcome"> | undefined;
  return {
    services: [CatalogService],
    migrations: [catalogMigrations, eventsMigrations],
    register: (router) =>
      router.service(
        CatalogService,
        createCatalogService({
          db,
          searchWaiter: options.searchWaiter,
          countFromKnownState: (outcome) => fromKnownState?.inc({ outcome }),
        }),
      ),
    watch: (metrics) => {
      registerOutboxMetrics(metrics.registry, db);
      fromKnownState = new Counter({
        name: "stockroom_catalog_updates_from_known_state_total",
        help: "Conditional UpdateProducts sent in one round trip from the state the server last saw: applied, or stale (the row had moved on; the locking path answered).",
        labelNames: ["outcome"],
        registers: [metrics.registry],
      });
    },
  };
}
