/**
 * The orders API process on its own (how Nomad would run it): OrderService
 * plus an in-process reservation sweeper (safe in every replica). The only
 * file of the process that reads process.env. `npm start` instead runs every
 * service in one process.
 */
import { startApi, stopOnSignals } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { parseOrderConfig } from "./config.ts";
import { ordersModule } from "./module.ts";
import { startOrderSweeper } from "./sweeper.ts";
import type { OrderTables } from "./store.ts";

const config = parseApiConfig(process.env);
const orders = parseOrderConfig(process.env);
const api = await startApi<OrderTables>({
  name: "stockroom-orders",
  config,
  migrate: process.env["MIGRATE_ON_START"] === "true",
  modules: (db, { metrics, draining }) => [ordersModule(db, { ...orders, shutdown: draining, metrics })],
});
const sweeper = startOrderSweeper({
  db: api.db,
  log: api.log,
  everyMs: orders.sweepEveryMs,
  batch: orders.sweepBatch,
  metrics: api.metrics,
});
api.log.info("listening", { url: api.server.url });
stopOnSignals(async () => {
  await sweeper.stop();
  await api.stop();
}, api.log);
