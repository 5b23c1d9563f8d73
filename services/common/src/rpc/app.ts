import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Kysely } from "kysely";
import { createKeyVerifier, merchantOfKey } from "./auth.ts";
import type { ApiConfig } from "../config.ts";
import {
  commonMigrations,
  createDatabase,
  ensureDatabase,
  migrateToLatest,
  type MigrationSet,
  type QueryObserver,
} from "../db/database.ts";
import { ServingStatus } from "./health.ts";
import { createAuthInterceptor, createErrorInterceptor, createMetricsInterceptor, createTracingInterceptor } from "./interceptors.ts";
import { createLogger, type Logger } from "../observe/log.ts";
import { tierLabel, type Metrics } from "../observe/metrics.ts";
import type { MetricsServer } from "../observe/metrics-server.ts";
import { startObservability } from "../observe/observability.ts";
import type { CommonTables } from "../db/schema.ts";
import { startApiServer, type ApiServer, type ApiServerOptions } from "./server.ts";
import { defaultWebDir } from "./web-app.ts";
import type { RateLimitedError } from "../errors.ts";
import { startCallRecorder } from "../observe/sla.ts";
import { startTelemetry } from "../observe/telemetry.ts";

/** ServiceModule is one service's contribution to an API process. */
export interface ServiceModule {
  services: DescService[];
  migrations: MigrationSet[];
  register(router: ConnectRouter): void;
  /** watch adds the module's own series to the process's metrics (e.g. the outbox backlog gauges of @stockroom/events). */
  watch?(metrics: Metrics): void;
  /**
   * shed may refuse a call of the module's before it is decoded or its key
   * checked, from its path ("/package.Service/Method") and the merchant its
   * API key names (not yet verified: only ever use it to refuse, never to
   * grant): an overloaded merchant's calls are answered for next to nothing.
   */
  shed?(path: string, merchantId: string): RateLimitedError | undefined;
}

/** ModuleDeps is what startApi hands every module besides the database. */
export interface ModuleDeps {
  /** The process's metrics: modules count their own events (orders, rate limits) here. */
  metrics: Metrics;
  /** The process's log (one JSON object per line). */
  log: Logger;
  /**
   * Aborted when the server starts to drain (its close()): a module's open
   * server streams (WatchOrder, WatchBulkJob) end then, instead of holding
   * the drain for its whole drainMs; the SDK's watches reconnect.
   */
  draining: AbortSignal;
}

/** RunningApi is a started API process; DB is the tables its modules work on (the composition root names them). */
export interface RunningApi<DB extends CommonTables = CommonTables> {
  server: ApiServer;
  db: Kysely<DB>;
  log: Logger;
  metrics: Metrics;
  /** Serves /metrics, /healthz and /readyz when config.metricsPort is set. */
  metricsServer: MetricsServer | undefined;
  /** stop drains calls, writes the last call statistics, closes the pool and flushes traces. */
  stop(): Promise<void>;
}

/**
 * startApi wires one API process: telemetry, metrics, the database (created
 * and migrated when migrate is set), the interceptor chain (tracing,
 * metrics, errors, auth), the one-port server for the given modules, the
 * SLA call recorder, and health probes of MySQL (and NATS, when given) that
 * turn grpc.health.v1 to NOT_SERVING while either is unreachable.
 */
export async function startApi<DB extends CommonTables = CommonTables>(options: {
  name: string;
  config: ApiConfig;
  migrate: boolean;
  modules: (db: Kysely<DB>, deps: ModuleDeps) => ServiceModule[];
  /** Sees every SQL statement (tests check Vitess readiness with it). */
  observe?: QueryObserver;
  /** The NATS connection the process depends on: probed with MySQL for health. */
  nats?: NatsConnection;
  /** A registry to share with other parts of the process (start.ts's worker); default a new one. */
  metrics?: Metrics;
}): Promise<RunningApi<DB>> {
  const { config } = options;
  const log = createLogger(options.name, config.logLevel);
  const stopTelemetry = await startTelemetry({ serviceName: options.name, otlpEndpoint: config.otlpEndpoint });
  if (options.migrate) await ensureDatabase(config.databaseUrl);
  const db = createDatabase<DB>({
    url: config.databaseUrl,
    poolSize: config.dbPoolSize,
    observe: options.observe,
  });
  let health: ((up: boolean) => void) | undefined;
  const observability = await startObservability({
    config,
    log,
    db,
    nats: options.nats,
    metrics: options.metrics,
    onDependencies: (up) => health?.(up),
  });
  const { metrics } = observability;
  const draining = new AbortController();
  const modules = options.modules(db, { metrics, log, draining: draining.signal });
  // DB extends CommonTables: the same database, seen through the tables common itself reads and writes.
  const common = db as unknown as Kysely<CommonTables>;
  for (const m of modules) m.watch?.(metrics);
  if (options.migrate) {
    const applied = await migrateToLatest(db, [commonMigrations, ...modules.flatMap((m) => m.migrations)]);
    if (applied.length > 0) log.info("migrations applied", { applied });
  }
  const recorder = config.slaFlushMs > 0 ? startCallRecorder({ db: common, flushEveryMs: config.slaFlushMs, metrics, log }) : undefined;
  const server = await startApiServer({
    host: config.host,
    port: config.port,
    services: modules.flatMap((m) => m.services),
    routes: (router) => {
      for (const m of modules) m.register(router);
    },
    interceptors: [
      createTracingInterceptor(),
      createMetricsInterceptor(metrics, recorder),
      createErrorInterceptor(log),
      createAuthInterceptor(createKeyVerifier(common, config.authCacheMs)),
    ],
    log,
    drainMs: config.drainMs,
    draining,
    corsOrigins: config.corsOrigins,
    webDir: config.webDir ?? defaultWebDir(),
    shed: earlyShedding(modules, metrics),
  });
  health = (up) => server.health.setAll(up ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
  if (observability.probes && !observability.probes.up) health(false);
  return {
    server,
    db,
    log,
    metrics,
    metricsServer: observability.metricsServer,
    async stop() {
      observability.draining();
      await server.close();
      await recorder?.stop();
      await db.destroy();
      await observability.stop();
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

/**
 * earlyShedding combines the modules' shed hooks for the server (server.ts
 * shedStreams), reading the merchant from the bearer key, and counts the
 * refusals as rate-limit rejections like those of the handlers.
 */
function earlyShedding(modules: ServiceModule[], metrics: Metrics): ApiServerOptions["shed"] {
  const hooks = modules.flatMap((m) => (m.shed ? [m.shed.bind(m)] : []));
  if (hooks.length === 0) return undefined;
  return (path, authorization) => {
    const merchantId = merchantOfKey(authorization?.startsWith("Bearer ") ? authorization.slice(7) : "");
    if (!merchantId) return undefined;
    for (const shed of hooks) {
      const error = shed(path, merchantId);
      if (!error) continue;
      const [, service = "", method = ""] = path.split("/");
      metrics.rateLimitRejections.inc({ service, method, tier: tierLabel(undefined) });
      return error;
    }
    return undefined;
  };
}
