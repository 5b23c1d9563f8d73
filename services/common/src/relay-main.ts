/**
 * The outbox relay process (how Nomad runs it; `npm start` runs the relay in
 * process). Run two or more for fast failover: one leads, the others wait on
 * its lock. The only file of the relay that reads process.env.
 */
import { stopOnSignals } from "./app.ts";
import { parseApiConfig, parseEventStreamConfig, parseRelayConfig } from "./config.ts";
import { createDatabase } from "./db.ts";
import { createLogger } from "./log.ts";
import { connectNats } from "./nats.ts";
import { startObservability } from "./observability.ts";
import { startOutboxRelay } from "./relay.ts";
import type { CommonTables } from "./schema.ts";
import { startTelemetry } from "./telemetry.ts";

const config = parseApiConfig(process.env);
const log = createLogger("stockroom-relay", config.logLevel);
const stopTelemetry = await startTelemetry({ serviceName: "stockroom-relay", otlpEndpoint: config.otlpEndpoint });
// The lock session, a connection for pruning and one spare.
const db = createDatabase<CommonTables>({ url: config.databaseUrl, poolSize: 3 });
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom-relay", log });
const observability = await startObservability({ config, log, db, nats: nats.nc });
const relay = await startOutboxRelay({ db, nats, events: parseEventStreamConfig(process.env), config: parseRelayConfig(process.env), log });
observability.metrics.watchRelay(relay);
log.info("outbox relay started");
stopOnSignals(async () => {
  observability.draining();
  await relay.stop();
  await nats.close();
  await db.destroy();
  await observability.stop();
  await stopTelemetry();
}, log);
