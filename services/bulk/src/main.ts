/**
 * The bulk API process on its own (how Nomad runs it): BulkJobService takes
 * uploads, stages them and queues their chunks on JetStream. It applies
 * nothing itself: worker processes (worker-main.ts) do. The only file of the
 * bulk API process that reads process.env. `npm start` instead runs every
 * service, workers included, in one process.
 */
import { startApi, stopOnSignals } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { parseBulkConfig } from "./config.ts";
import { bulkModule } from "./module.ts";
import { ensureChunkQueue } from "./queue.ts";

const config = parseApiConfig(process.env);
const bulk = parseBulkConfig(process.env);
const nats = await connectNats({
  servers: config.natsUrl.split(","),
  name: "stockroom-bulk-api",
  log: createLogger("stockroom-bulk-api", config.logLevel),
  security: config.natsSecurity,
});
// The chunk stream and the workers' consumer exist before the first upload publishes, and before any
// worker starts: the API watches that consumer's lag (module.ts), which must be there with no worker up.
await ensureChunkQueue(nats.jsm, bulk.queue);
const api = await startApi({
  name: "stockroom-bulk-api",
  config,
  migrate: process.env["MIGRATE_ON_START"] === "true",
  modules: (db, { metrics, draining }) => [
    bulkModule(db, { nats, queue: bulk.queue, limits: bulk.limits, metrics, workersDesired: bulk.workersDesired, shutdown: draining }),
  ],
  nats: nats.nc,
});
api.log.info("listening", { url: api.server.url });
stopOnSignals(async () => {
  await api.stop(); // drains in-flight uploads, which may still publish chunks
  await nats.close();
}, api.log);
