/** @stockroom/orders: the package's public face; everything else is internal. */
export { parseOrderConfig } from "./config.ts";
export { ordersModule } from "./module.ts";
export { type OrderDb, type OrderTables, orderMigrations } from "./store.ts";
export { startOrderSweeper } from "./sweeper.ts";
