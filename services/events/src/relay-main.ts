/**
 * The outbox relay process (how Nomad runs it; `npm start` runs the relay in
 * process). Run two or more for fast failover: one leads, the others wait on
 * its lock. The only file of the relay that reads process.env. RELAY_SOURCE
 * picks polling (the default) or vtgate's VStream (relay-vstream.ts).
 */
import { stopOnSignals } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { createLogger, startObservability, startTelemetry } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { parseEventStreamConfig, parseRelayConfig } from "./config.ts";
import { registerRelayMetrics } from "./metrics.ts";
import { eventsMigrations } from "./migrations.ts";
import { startRelay } from "./relay-vstream.ts";
import type { EventTables } from "./schema.ts";

const config = parseApiConfig(process.env);
const log = createLogger("stockroom-relay", config.logLevel);
const stopTelemetry = await startTelemetry({ serviceName: "stockroom-relay", otlpEndpoint: config.otlpEndpoint });
// As the API processes: MIGRATE_ON_START=true applies the outbox table's migrations (and only those) first.
const migrate = process.env["MIGRATE_ON_START"] === "true";
if (migrate) await ensureDatabase(config.databaseUrl);
// The lock session, a connection for pruning and one spare.
const db = createDatabase<EventTables>({ url: config.databaseUrl, poolSize: 3 });
if (migrate) {
  const applied = await migrateToLatest(db, [eventsMigrations]);
  if (applied.length > 0) log.info("migrations applied", { applied });
}
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom-relay", log, security: config.natsSecurity });
const observability = await startObservability({ config, log, db, nats: nats.nc });
const relay = await startRelay({ db, nats, events: parseEventStreamConfig(process.env), config: parseRelayConfig(process.env), log });
registerRelayMetrics(observability.metrics.registry, relay);
log.info("outbox relay started");
stopOnSignals(async () => {
  observability.draining();
  await relay.stop();
  await nats.close();
  await db.destroy();
  await observability.stop();
  await stopTelemetry();
}, log);
