/**
 * A flash sale with the limits a deployment runs with (parseOrderConfig's
 * bulkhead, batch and queue settings; the rate limit, a per-tier policy,
 * is off here): a quiet merchant's burst on one SKU is taken in batches,
 * not refused for load, and once the SKU is sold out one read answers the
 * crowd waiting for it.
 */
import test from "ava";
import { Code } from "@connectrpc/connect";
import { catalogModule } from "@stockroom/catalog";
import { startTestApi } from "@stockroom/common/testing";
import { ordersModule, parseOrderConfig, type OrderTables } from "../src/index.ts";
import { createProduct, errorInfo, OrderService, settle, stockOf } from "./helpers.ts";

const defaults = parseOrderConfig({});
const api = await startTestApi<OrderTables>("orders_flash_sale", (db) => [
  catalogModule(db),
  ordersModule(db, { rateLimit: { ratePerSec: 0, burst: 1 }, watchIntervalMs: 50 }),
]);
test.after.always(() => api.close());
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;

/** productReads counts the non-locking reads of a SKU's product row since `from` (an index into api.queries). */
const productReads = (sku: string, from: number) =>
  api.queries
    .slice(from)
    .filter((q) => /^select \* from `products` where/i.test(q.sql) && !/for update/i.test(q.sql) && q.parameters.includes(sku)).length;

test.serial("a quiet merchant's 1,000 orders at once on stock 137: none refused for load, 137 placed, the rest sold out", async (t) => {
  t.true(defaults.bulkhead.queueMs > 0 && defaults.bulkhead.waitingPerSku >= 1000, "the defaults cap orders under way");
  await createProduct(api, api.merchantA, "FLASH-1", 137);
  const { won, lost } = await settle(
    Array.from({ length: 1000 }, (_, i) => orders.createOrder({ requestId: `flash-${i}`, lines: [{ sku: "FLASH-1", quantity: 1 }] })),
  );
  const shed = lost.filter((e) => e.code === Code.ResourceExhausted);
  // With a floor of 4 x ORDER_BATCH_MAX (128) under way and no answer rate yet, 872 of them were refused here.
  t.is(shed.length, 0, shed[0]?.rawMessage);
  t.is(won.length, 137);
  t.true(lost.every((e) => e.code === Code.FailedPrecondition && errorInfo(e)?.reason === "INSUFFICIENT_STOCK"));
  t.deepEqual(await stockOf(api, merchantId, "FLASH-1"), { stock: 0, version: 138 });
});

test.serial("once a batch finds the SKU sold out, its read refuses the orders waiting behind it too", async (t) => {
  await createProduct(api, api.merchantA, "FLASH-2", 2);
  const sold = await settle([0, 1].map((i) => orders.createOrder({ requestId: `flash2-${i}`, lines: [{ sku: "FLASH-2", quantity: 1 }] })));
  t.is(sold.won.length, 2);
  const from = api.queries.length;
  const { won, lost } = await settle(
    Array.from({ length: 400 }, (_, i) => orders.createOrder({ requestId: `flash2-late-${i}`, lines: [{ sku: "FLASH-2", quantity: 1 }] })),
  );
  t.is(won.length, 0);
  t.true(lost.every((e) => errorInfo(e)?.reason === "INSUFFICIENT_STOCK"));
  // A batch at a time (ORDER_BATCH_MAX orders per read) it takes 13 reads at least (15 seen); 3 or 4 with the sweep.
  const reads = productReads("FLASH-2", from);
  t.true(reads > 0 && reads < 400 / defaults.maxBatch, `${reads} reads of the product for 400 refused orders`);
});
