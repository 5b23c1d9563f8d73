/**
 * The webhook dispatcher process (how a deployment runs it; `npm start`
 * runs it in process). Run as many as needed: they share the durable
 * consumer and claim deliveries with SKIP LOCKED. The only file of the
 * dispatcher that reads process.env.
 */
import { stopOnSignals } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { parseEventStreamConfig } from "@stockroom/events";
import { createDatabase } from "@stockroom/common/db";
import { createLogger, startObservability, startTelemetry } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { parseNotifyConfig } from "./config.ts";
import { startWebhookDispatcher } from "./dispatcher.ts";
import { registerDispatcherMetrics } from "./metrics.ts";
import type { NotifyTables } from "./store.ts";

const config = parseApiConfig(process.env);
const notify = parseNotifyConfig(process.env);
const log = createLogger("stockroom-webhooks", config.logLevel);
const stopTelemetry = await startTelemetry({ serviceName: "stockroom-webhooks", otlpEndpoint: config.otlpEndpoint });
const db = createDatabase<NotifyTables>({ url: config.databaseUrl, poolSize: config.dbPoolSize });
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom-webhooks", log, security: config.natsSecurity });
const observability = await startObservability({ config, log, db, nats: nats.nc });
const dispatcher = await startWebhookDispatcher({
  db,
  nats,
  events: parseEventStreamConfig(process.env),
  config: notify.dispatcher,
  allowPrivateTargets: notify.allowPrivateTargets,
  log,
});
registerDispatcherMetrics(observability.metrics.registry, dispatcher);
log.info("webhook dispatcher started");
stopOnSignals(async () => {
  observability.draining();
  await dispatcher.stop();
  await nats.close();
  await db.destroy();
  await observability.stop();
  await stopTelemetry();
}, log);
