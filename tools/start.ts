/**
 * `npm start`: every service in one process with local defaults. Migrates,
 * makes sure a demo merchant exists, and prints the URL and its API key.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { startApi, stopOnSignals } from "@stockroom/common/app.ts";
import { createKeyVerifier, createMerchant } from "@stockroom/common/auth.ts";
import { parseApiConfig } from "@stockroom/common/config.ts";
import type { BulkDb } from "@stockroom/bulk/apply.ts";
import { parseBulkConfig } from "@stockroom/bulk/config.ts";
import { bulkModule } from "@stockroom/bulk/module.ts";
import { startBulkWorker } from "@stockroom/bulk/worker.ts";
import { createLogger } from "@stockroom/common/log.ts";
import { connectNats } from "@stockroom/common/nats.ts";
import { catalogModule } from "@stockroom/catalog/module.ts";

const config = parseApiConfig(process.env);
const bulk = parseBulkConfig(process.env);
const log = createLogger("stockroom", config.logLevel);
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom", log });
const api = await startApi({
  name: "stockroom",
  config,
  migrate: true,
  modules: (db) => [
    catalogModule(db),
    // Contracts land before their implementations: unimplemented calls answer UNIMPLEMENTED.
    bulkModule(db, { nats, queue: bulk.queue, limits: bulk.limits }),
    { services: [OrderService], migrations: [], register: (router) => router.service(OrderService, {}) },
  ],
});

// The demo key is kept in .stockroom/ (git-ignored) because only its hash is stored.
const stateDir = path.join(import.meta.dirname, "..", ".stockroom");
const demoFile = path.join(stateDir, "demo-merchant.json");
let demo: { merchantId: string; apiKey: string } | undefined;
if (existsSync(demoFile)) {
  const saved = JSON.parse(readFileSync(demoFile, "utf8")) as { merchantId: string; apiKey: string; databaseUrl: string };
  const valid = saved.databaseUrl === config.databaseUrl &&
    (await createKeyVerifier(api.db, 0)(saved.apiKey).then(() => true, () => false));
  if (valid) demo = saved;
}
if (!demo) {
  const created = await createMerchant(api.db, "Demo merchant");
  demo = { merchantId: created.merchantId, apiKey: created.apiKey };
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(demoFile, JSON.stringify({ ...demo, databaseUrl: config.databaseUrl }, null, 2) + "\n", { mode: 0o600 });
}

const url = api.server.url;
process.stdout.write(`
stockroom is running on ${url}  (gRPC, gRPC-Web and Connect on one port)

  demo merchant  ${demo.merchantId}
  demo API key   ${demo.apiKey}

Try it:
  npx buf curl --protocol connect --http2-prior-knowledge \\
    -H "authorization: Bearer ${demo.apiKey}" \\
    -d '{"product":{"sku":"MUG-1","title":"Mug","price":{"currencyCode":"EUR","minorUnits":"1290"},"stock":5}}' \\
    ${url}/stockroom.catalog.v1.CatalogService/CreateProduct

Ctrl-C drains in-flight calls and stops.
`);
const worker = await startBulkWorker({
  db: api.db as unknown as BulkDb,
  nats,
  queue: bulk.queue,
  log,
  concurrency: bulk.workerConcurrency,
  reconcileEveryMs: bulk.reconcileEveryMs,
});
stopOnSignals(async () => {
  await api.server.close(); // stop taking uploads first
  await worker.stop();
  await api.stop();
  await nats.close();
}, api.log);
