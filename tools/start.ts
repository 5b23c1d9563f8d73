/**
 * `npm start`: every service in one process with local defaults. Migrates,
 * makes sure a demo merchant exists, and prints the URL and its API key.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { apiKeysModule, startApi, stopOnSignals, createKeyVerifier, createMerchant } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { parseEventStreamConfig, parseRelayConfig, registerRelayMetrics, startOutboxRelay } from "@stockroom/events";
import { bulkModule, parseBulkConfig, startBulkWorker, workerSettings } from "@stockroom/bulk";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { catalogModule } from "@stockroom/catalog";
import { notifyModule, parseNotifyConfig, registerDispatcherMetrics, startWebhookDispatcher } from "@stockroom/notify";
import { parseOrderConfig, ordersModule, startOrderSweeper } from "@stockroom/orders";
import {
  parseSearchConfig,
  searchModule,
  projectionLag,
  startSearchProjector,
  openSearchDatabase,
  createSearchWaiter,
  reindexOlderTerms,
} from "@stockroom/search";
import type { StockroomTables } from "./tables.ts";
import { buildWeb } from "./web-build.ts";

// Locally, metrics are on by default (http://127.0.0.1:9464/metrics); METRICS_PORT=off turns them off.
const config = { ...parseApiConfig(process.env), ...(process.env["METRICS_PORT"] === undefined ? { metricsPort: 9464 } : {}) };
const bulk = parseBulkConfig(process.env);
const orders = parseOrderConfig(process.env);
const search = parseSearchConfig(process.env);
const events = parseEventStreamConfig(process.env);
// Locally, webhooks may target loopback and private addresses (a receiver on this machine); WEBHOOK_ALLOW_PRIVATE_TARGETS=false refuses them.
const notify = parseNotifyConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "true", ...process.env });
// BULK_WORKERS_IN_PROCESS=false leaves bulk jobs to workers run separately (node services/bulk/src/worker-main.ts).
const workersInProcess = parseFlag("BULK_WORKERS_IN_PROCESS", true);
const log = createLogger("stockroom", config.logLevel);
// The dashboard is served at / from web/dist: build it first when it is missing or older than its sources.
if (config.webDir === undefined && buildWeb()) log.info("dashboard built (web/dist)");
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom", log, security: config.natsSecurity });
// Search has its own database (SEARCH_DATABASE_URL), created and migrated here.
const searchDb = await openSearchDatabase({ url: search.databaseUrl, poolSize: search.dbPoolSize, migrate: true });
const api = await startApi<StockroomTables>({
  name: "stockroom",
  config,
  migrate: true,
  nats: nats.nc,
  modules: (db, { metrics, log: apiLog, draining }) => [
    catalogModule(db, { searchWaiter: createSearchWaiter(searchDb) }),
    bulkModule(db, { nats, queue: bulk.queue, limits: bulk.limits, metrics, workersDesired: bulk.workersDesired, shutdown: draining }),
    ordersModule(db, { ...orders, shutdown: draining, metrics }),
    notifyModule(db, notify),
    apiKeysModule(db, { log: apiLog }),
    searchModule(searchDb, { catalogDb: db, lag: () => projectionLag(nats.jsm, events.stream, search.projector.durable) }),
  ],
}).catch((error: unknown) => {
  // Mostly a port in use (PORT, METRICS_PORT): one line that says what to do, not a stack trace.
  process.stderr.write(`stockroom: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});

// The demo keys are kept in .stockroom/ (git-ignored), one per database URL, because only their hashes are stored.
const stateDir = path.join(import.meta.dirname, "..", ".stockroom");
const demoFile = path.join(stateDir, "demo-merchant.json");
const demos = existsSync(demoFile) ? readDemos(demoFile) : {};
let demo = demos[config.databaseUrl];
// A key kept for a database that was since emptied (or whose merchant is gone) is replaced.
if (demo && !(await keyWorks(demo.apiKey))) demo = undefined;
if (!demo) {
  const created = await createMerchant(api.db, "Demo merchant");
  demo = { merchantId: created.merchantId, apiKey: created.apiKey };
  demos[config.databaseUrl] = demo;
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(demoFile, `${JSON.stringify(demos, null, 2)}\n`, { mode: 0o600 });
}

const url = api.server.url;
process.stdout.write(`
stockroom is running on ${url}  (gRPC, gRPC-Web and Connect on one port)

  dashboard      ${config.webDir === false ? "off (WEB_DIR=off)" : `${url}/  (sign in with the key below)`}

  demo merchant  ${demo.merchantId}
  demo API key   ${demo.apiKey}

Try it:
  npx buf curl --protocol connect --http2-prior-knowledge \\
    -H "authorization: Bearer ${demo.apiKey}" \\
    -d '{"product":{"sku":"MUG-1","title":"Mug","price":{"currencyCode":"EUR","minorUnits":"1290"},"stock":5}}' \\
    ${url}/stockroom.catalog.v1.CatalogService/CreateProduct

Metrics: ${api.metricsServer ? `${api.metricsServer.url}/metrics` : "off (METRICS_PORT)"}

Bulk workers: ${workersInProcess ? "in this process" : "not here (BULK_WORKERS_IN_PROCESS=false): run node services/bulk/src/worker-main.ts"}

Ctrl-C drains in-flight calls and stops.
`);
const worker = workersInProcess
  ? await startBulkWorker({ db: api.db, nats, log, metrics: api.metrics, ...workerSettings(bulk) })
  : undefined;
if (!worker) log.info("bulk workers not started here (BULK_WORKERS_IN_PROCESS=false): run node services/bulk/src/worker-main.ts");
const relay = await startOutboxRelay({ db: api.db, nats, events, config: parseRelayConfig(process.env), log });
registerRelayMetrics(api.metrics.registry, relay);
api.metrics.watchConsumer(nats.jsm, events.stream, search.projector.durable);
const webhooks = await startWebhookDispatcher({
  db: api.db,
  nats,
  events,
  config: notify.dispatcher,
  allowPrivateTargets: notify.allowPrivateTargets,
  log,
});
registerDispatcherMetrics(api.metrics.registry, webhooks);
const projector = await startSearchProjector({ db: searchDb, nats, events, config: search.projector, log });
// Rows whose search terms an older release made are remade from the catalog in the background (a deployment runs
// `npm run reindex` after the roll instead).
const termsReindex = reindexOlderTerms({ catalogDb: api.db, searchDb }, log);
const sweeper = startOrderSweeper({ db: api.db, log, everyMs: orders.sweepEveryMs, batch: orders.sweepBatch, metrics: api.metrics });
stopOnSignals(async () => {
  await api.server.close(); // stop taking uploads first
  await worker?.stop();
  await sweeper.stop();
  await relay.stop();
  await webhooks.stop();
  await projector.stop();
  await termsReindex.stop();
  await api.stop();
  await nats.close();
  await searchDb.destroy();
}, api.log);

/** parseFlag reads a true/false environment setting; anything else stops start-up with a clear message. */
function parseFlag(name: string, fallback: boolean): boolean {
  const raw = process.env[name]?.trim().toLowerCase();
  if (raw === undefined || raw === "") return fallback;
  if (raw === "true" || raw === "1") return true;
  if (raw === "false" || raw === "0") return false;
  throw new Error(`${name} must be true or false, got ${JSON.stringify(process.env[name])}`);
}

interface Demo {
  merchantId: string;
  apiKey: string;
}

/** readDemos reads the demo keys by database URL; until 2026-12-05 the file held one, with its URL beside it. */
function readDemos(file: string): Record<string, Demo> {
  const saved = JSON.parse(readFileSync(file, "utf8")) as Record<string, Demo> | (Demo & { databaseUrl: string });
  if (typeof saved.databaseUrl === "string") {
    const { databaseUrl, merchantId, apiKey } = saved as Demo & { databaseUrl: string };
    return { [databaseUrl]: { merchantId, apiKey } };
  }
  return saved as Record<string, Demo>;
}

/** keyWorks tells whether the database still takes a kept demo key. */
async function keyWorks(apiKey: string): Promise<boolean> {
  try {
    await createKeyVerifier(api.db, 0)(apiKey);
    return true;
  } catch {
    return false;
  }
}
