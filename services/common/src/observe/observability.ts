import type { NatsConnection } from "@nats-io/transport-node";
import type { Kysely } from "kysely";
import type { ApiConfig } from "../config.ts";
import type { Logger } from "./log.ts";
import { createMetrics, type Metrics } from "./metrics.ts";
import { startMetricsServer, type MetricsServer } from "./metrics-server.ts";
import { mysqlCheck, natsCheck, startDependencyProbes, type DependencyProbes } from "./probes.ts";

export interface ProcessObservability {
  metrics: Metrics;
  /** Serves /metrics, /healthz and /readyz when config.metricsPort is set. */
  metricsServer: MetricsServer | undefined;
  probes: DependencyProbes | undefined;
  /** draining makes /readyz answer 503 from now on: call it first thing on shutdown. */
  draining(): void;
  /** stop stops probing and serving metrics (last, so a final scrape still sees the shutdown). */
  stop(): Promise<void>;
}

/**
 * startObservability gives a process (API, bulk worker, relay, projector)
 * its metrics registry (with the database pool watched as "main"), health
 * probes of MySQL and, when given, NATS (every config.healthProbeMs), and,
 * with METRICS_PORT set, the /metrics, /healthz and /readyz server; /readyz
 * is 503 while a dependency is down or the process is stopping.
 */
export async function startObservability(options: {
  config: Pick<ApiConfig, "host" | "databaseUrl" | "metricsPort" | "healthProbeMs">;
  log: Logger;
  // biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
  db?: Kysely<any>;
  nats?: NatsConnection;
  /** Called when the dependencies go down (false) or come back (true). */
  onDependencies?: (up: boolean) => void;
  metrics?: Metrics;
}): Promise<ProcessObservability> {
  const { config, log } = options;
  const metrics = options.metrics ?? createMetrics();
  if (options.db) metrics.watchDatabasePool(options.db, "main");
  const probes =
    config.healthProbeMs > 0
      ? startDependencyProbes({
          checks: [mysqlCheck(config.databaseUrl), ...(options.nats ? [natsCheck(options.nats)] : [])],
          everyMs: config.healthProbeMs,
          onChange: options.onDependencies,
          metrics,
          log,
        })
      : undefined;
  let stopping = false;
  const metricsServer =
    config.metricsPort === undefined
      ? undefined
      : await startMetricsServer({ host: config.host, port: config.metricsPort, metrics, ready: () => !stopping && (probes?.up ?? true) });
  if (metricsServer) log.info("metrics listening", { url: `${metricsServer.url}/metrics` });
  return {
    metrics,
    metricsServer,
    probes,
    draining() {
      stopping = true;
    },
    async stop() {
      stopping = true;
      await probes?.stop();
      await metricsServer?.close();
    },
  };
}
