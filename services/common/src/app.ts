import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import { createKeyVerifier } from "./auth.ts";
import type { ApiConfig } from "./config.ts";
import {
  commonMigrations,
  createDatabase,
  ensureDatabase,
  migrateToLatest,
  type MigrationSet,
  type QueryObserver,
} from "./db.ts";
import { createAuthInterceptor, createErrorInterceptor, createTracingInterceptor } from "./interceptors.ts";
import { createLogger, type Logger } from "./log.ts";
import type { CommonTables } from "./schema.ts";
import { startApiServer, type ApiServer } from "./server.ts";
import { startTelemetry } from "./telemetry.ts";

/** ServiceModule is one service's contribution to an API process. */
export interface ServiceModule {
  services: DescService[];
  migrations: MigrationSet[];
  register(router: ConnectRouter): void;
}

export interface RunningApi {
  server: ApiServer;
  db: Kysely<CommonTables>;
  log: Logger;
  /** stop drains calls, closes the pool and flushes traces. */
  stop(): Promise<void>;
}

/**
 * startApi wires one API process: telemetry, the database (created and
 * migrated when migrate is set), the interceptor chain (tracing, errors,
 * auth) and the one-port server for the given modules.
 */
export async function startApi(options: {
  name: string;
  config: ApiConfig;
  migrate: boolean;
  modules: (db: Kysely<any>) => ServiceModule[];
  /** Sees every SQL statement (tests check Vitess readiness with it). */
  observe?: QueryObserver;
}): Promise<RunningApi> {
  const { config } = options;
  const log = createLogger(options.name, config.logLevel);
  const stopTelemetry = await startTelemetry({ serviceName: options.name, otlpEndpoint: config.otlpEndpoint });
  if (options.migrate) await ensureDatabase(config.databaseUrl);
  const db = createDatabase<CommonTables>({
    url: config.databaseUrl,
    poolSize: config.dbPoolSize,
    observe: options.observe,
  });
  const modules = options.modules(db);
  if (options.migrate) {
    const applied = await migrateToLatest(db, [commonMigrations, ...modules.flatMap((m) => m.migrations)]);
    if (applied.length > 0) log.info("migrations applied", { applied });
  }
  const server = await startApiServer({
    host: config.host,
    port: config.port,
    services: modules.flatMap((m) => m.services),
    routes: (router) => modules.forEach((m) => m.register(router)),
    interceptors: [createTracingInterceptor(), createErrorInterceptor(log), createAuthInterceptor(createKeyVerifier(db, config.authCacheMs))],
    log,
    drainMs: config.drainMs,
  });
  return {
    server,
    db,
    log,
    async stop() {
      await server.close();
      await db.destroy();
      await stopTelemetry();
    },
  };
}

/** stopOnSignals drains and exits on SIGTERM or SIGINT (a second signal exits at once). */
export function stopOnSignals(stop: () => Promise<void>, log: Logger): void {
  let stopping = false;
  const onSignal = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    log.info("draining", { signal });
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error("shutdown failed", { error });
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
}
