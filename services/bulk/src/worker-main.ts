/**
 * The bulk worker process (how Nomad runs it; `npm start` runs workers in
 * process). Any number of these share one durable consumer. The only file of
 * the worker that reads process.env. With METRICS_PORT set it serves
 * /metrics, /healthz and /readyz (ready while MySQL and NATS answer).
 */
import { readdirSync } from "node:fs";
import { getPriority, hostname, setPriority } from "node:os";
import { parseApiConfig } from "@stockroom/common";
import { createDatabase } from "@stockroom/common/db";
import { createLogger, startObservability, startTelemetry } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { stopOnSignals } from "@stockroom/common/rpc";
import type { BulkDb } from "./store.ts";
import { hostSlotSettings, parseBulkConfig, workerSettings } from "./config.ts";
import { startBulkWorker } from "./worker.ts";

const config = parseApiConfig(process.env);
const bulk = parseBulkConfig(process.env);
const log = createLogger("stockroom-bulk-worker", config.logLevel);
if (bulk.workerNice > 0) lowerPriority(bulk.workerNice);
const stopTelemetry = await startTelemetry({ serviceName: "stockroom-bulk-worker", otlpEndpoint: config.otlpEndpoint });
const db: BulkDb = createDatabase({ url: config.databaseUrl, poolSize: config.dbPoolSize });
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom-bulk-worker", log, security: config.natsSecurity });
const observability = await startObservability({ config, log, db, nats: nats.nc });
const { metrics } = observability;
// At most BULK_WORKER_SLOTS_PER_HOST workers of a host apply at once; the others stand by (host-slots.ts).
const hostSlots = hostSlotSettings(bulk, `${hostname()}:${process.pid}`);
const worker = await startBulkWorker({ db, nats, log, metrics, ...workerSettings(bulk), hostSlots });
log.info("bulk worker started", {
  concurrency: bulk.workerConcurrency,
  nice: bulk.workerNice,
  hostSlots: hostSlots ? `${hostSlots.slots} on ${hostSlots.host}` : "off",
});
stopOnSignals(async () => {
  observability.draining();
  await worker.stop();
  await nats.close();
  await db.destroy();
  await observability.stop();
  await stopTelemetry();
}, log);

/**
 * lowerPriority raises the niceness of every thread of this process to at
 * least nice: on Linux a niceness is per thread, and V8's and libuv's threads
 * already run (threads started later inherit the main thread's). Raising a
 * niceness needs no privilege; one already higher is kept. Without /proc,
 * the calling thread's.
 */
function lowerPriority(nice: number): void {
  let threads: number[];
  try {
    threads = readdirSync("/proc/self/task").map(Number);
  } catch {
    threads = [0];
  }
  for (const tid of threads) {
    try {
      if (getPriority(tid) < nice) setPriority(tid, nice);
    } catch {
      // a thread that has just ended
    }
  }
}
