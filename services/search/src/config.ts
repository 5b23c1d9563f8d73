import { checkDatabaseUrl, readInt, type Env } from "@stockroom/common";
import { DEFAULT_PROJECTOR, type ProjectorConfig } from "./projector.ts";

/** SearchConfig holds the search settings; parseSearchConfig is pure over an env map. */
export interface SearchConfig {
  /** The search projection's own database (not the catalog's). */
  databaseUrl: string;
  dbPoolSize: number;
  projector: ProjectorConfig;
}

export const DEFAULT_SEARCH_DATABASE_URL = "mysql://root@127.0.0.1:3306/stockroom_search";

export function parseSearchConfig(env: Env): SearchConfig {
  return {
    databaseUrl: checkDatabaseUrl("SEARCH_DATABASE_URL", env["SEARCH_DATABASE_URL"] ?? DEFAULT_SEARCH_DATABASE_URL),
    dbPoolSize: readInt(env, "SEARCH_DB_POOL_SIZE", 20, 1, 1000),
    projector: {
      ...DEFAULT_PROJECTOR,
      durable: env["SEARCH_DURABLE"] ?? DEFAULT_PROJECTOR.durable,
      concurrency: readInt(env, "SEARCH_PROJECTOR_CONCURRENCY", DEFAULT_PROJECTOR.concurrency, 1, 4096),
      maxAckPending: readInt(env, "SEARCH_MAX_ACK_PENDING", DEFAULT_PROJECTOR.maxAckPending, 1, 100_000),
    },
  };
}
