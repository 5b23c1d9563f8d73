/**
 * The bulk worker process (how Nomad runs it; `npm start` runs workers in
 * process). Any number of these share one durable consumer. The only file of
 * the worker that reads process.env.
 */
import { parseApiConfig } from "@stockroom/common/config.ts";
import { createDatabase } from "@stockroom/common/db.ts";
import { createLogger } from "@stockroom/common/log.ts";
import { connectNats } from "@stockroom/common/nats.ts";
import { stopOnSignals } from "@stockroom/common/app.ts";
import { startTelemetry } from "@stockroom/common/telemetry.ts";
import type { BulkDb } from "./apply.ts";
import { parseBulkConfig } from "./config.ts";
import { startBulkWorker } from "./worker.ts";

const config = parseApiConfig(process.env);
const bulk = parseBulkConfig(process.env);
const log = createLogger("stockroom-bulk-worker", config.logLevel);
const stopTelemetry = await startTelemetry({ serviceName: "stockroom-bulk-worker", otlpEndpoint: config.otlpEndpoint });
const db: BulkDb = createDatabase({ url: config.databaseUrl, poolSize: config.dbPoolSize });
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom-bulk-worker", log });
const worker = await startBulkWorker({ db, nats, queue: bulk.queue, log, concurrency: bulk.workerConcurrency, reconcileEveryMs: bulk.reconcileEveryMs });
log.info("bulk worker started", { concurrency: bulk.workerConcurrency });
stopOnSignals(async () => {
  await worker.stop();
  await nats.close();
  await db.destroy();
  await stopTelemetry();
}, log);
