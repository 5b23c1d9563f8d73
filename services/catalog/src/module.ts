import type { Kysely } from "kysely";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import type { ServiceModule } from "@stockroom/common/app.ts";
import { createCatalogService } from "./rpc.ts";
import { catalogMigrations, type CatalogTables } from "./store.ts";

/** catalogModule plugs the catalog into an API process. */
export function catalogModule(db: Kysely<CatalogTables>): ServiceModule {
  return {
    services: [CatalogService],
    migrations: [catalogMigrations],
    register: (router) => router.service(CatalogService, createCatalogService({ db })),
  };
}
