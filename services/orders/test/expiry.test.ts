import test from "ava";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { OrderEventType, OrderState } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { createDatabase } from "@stockroom/common/db";
import { createLogger } from "@stockroom/common/observe";
import { waitFor } from "@stockroom/common/testing";
import type { OrderDb } from "../src/store.ts";
import { startOrderSweeper, sweepExpiredOrders } from "../src/sweeper.ts";
import {
  CatalogService,
  createProduct,
  dbOf,
  errorInfo,
  namesMerchant,
  orderEvents,
  OrderService,
  orderStockChanges,
  rejection,
  startOrders,
  stockOf,
} from "./helpers.ts";

// Serial: a sweep expires every due order in the database, whichever test made it.
const TTL_MS = 300;
const api = await startOrders("orders_expiry", { reservationTtlMs: TTL_MS });
const otherProcess: OrderDb = createDatabase({ url: api.databaseUrl, poolSize: 10 });
test.after.always(async () => {
  await otherProcess.destroy();
  await api.close();
});
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;
const pastTtl = () => new Promise((r) => setTimeout(r, TTL_MS + 50));
let n = 0;
const order = async (lines: { sku: string; quantity: number }[]) =>
  (await orders.createOrder({ requestId: `expiry-${++n}`, lines })).order!;

test.serial("two sweepers racing expire every due order exactly once and return its stock exactly once", async (t) => {
  await createProduct(api, api.merchantA, "EXP-1", 100);
  await createProduct(api, api.merchantA, "EXP-2", 100);
  const placed = await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      order(
        i % 2 === 0
          ? [{ sku: "EXP-1", quantity: 2 }]
          : [
              { sku: "EXP-2", quantity: 1 },
              { sku: "EXP-1", quantity: 1 },
            ],
      ),
    ),
  );
  t.is((await stockOf(api, merchantId, "EXP-1")).stock, 40);
  t.is((await stockOf(api, merchantId, "EXP-2")).stock, 80);
  const firstExpiry = Math.min(...placed.map((o) => timestampMs(o.expireTime!)));
  t.is(firstExpiry - Math.min(...placed.map((o) => timestampMs(o.createTime!))), TTL_MS);
  t.deepEqual(await sweepExpiredOrders(dbOf(api), 100, new Date(firstExpiry - 1)), { due: 0, expired: 0 }, "nothing is due before its TTL");
  await pastTtl();
  api.queries.length = 0;
  const [a, b] = await Promise.all([sweepExpiredOrders(dbOf(api), 100), sweepExpiredOrders(otherProcess, 100)]);
  t.is(a.expired + b.expired, 40, `split ${a.expired} + ${b.expired}`);
  // Each reservation and each return is a version of its own, however the sweeps grouped them.
  t.deepEqual(await stockOf(api, merchantId, "EXP-1"), { stock: 100, version: 81 });
  t.deepEqual(await stockOf(api, merchantId, "EXP-2"), { stock: 100, version: 41 });
  for (const o of placed) {
    const events = await orderEvents(api, merchantId, o.id);
    t.deepEqual(
      events.map((e) => e.event.type),
      [OrderEventType.CREATED, OrderEventType.EXPIRED],
    );
    t.is(events[1]!.event.order!.state, OrderState.EXPIRED);
    const audit = await orderStockChanges(api, merchantId, o.id);
    t.is(audit.filter((c) => c.reason === "order expired" && c.actor === "order_sweeper").length, o.lines.length);
  }
  t.is((await sweepExpiredOrders(dbOf(api), 100)).due, 0);
  // The scan is the one cross-merchant statement (a per-shard maintenance read); each expiry names its merchant.
  const offenders = [...new Set(api.queries.filter((q) => !namesMerchant(q.sql)).map((q) => q.sql))];
  t.is(offenders.length, 1);
  t.regex(offenders[0]!, /^select .* from `orders` where `state` = \? and `expire_at` <= \? order by `expire_at` limit \?$/);
});

test.serial("one sweep's group skips the line of a product deleted and re-created since, and returns the rest", async (t) => {
  await createProduct(api, api.merchantA, "EXP-GONE", 5);
  await createProduct(api, api.merchantA, "EXP-KEPT", 5);
  const gone = await order([{ sku: "EXP-GONE", quantity: 2 }]);
  const both = await order([
    { sku: "EXP-GONE", quantity: 1 },
    { sku: "EXP-KEPT", quantity: 3 },
  ]);
  await api.client(CatalogService, api.merchantA).deleteProduct({ sku: "EXP-GONE" });
  await createProduct(api, api.merchantA, "EXP-GONE", 1);
  await pastTtl();
  t.is((await sweepExpiredOrders(dbOf(api), 100)).expired, 2);
  t.deepEqual(await stockOf(api, merchantId, "EXP-GONE"), { stock: 1, version: 1 }, "the new product is not the one reserved");
  t.deepEqual(await stockOf(api, merchantId, "EXP-KEPT"), { stock: 5, version: 3 });
  for (const o of [gone, both]) t.is((await orders.getOrder({ orderId: o.id })).order!.state, OrderState.EXPIRED);
});

test.serial("an expired order can be neither cancelled nor paid", async (t) => {
  await createProduct(api, api.merchantA, "EXP-3", 5);
  const o = await order([{ sku: "EXP-3", quantity: 5 }]);
  await pastTtl();
  await sweepExpiredOrders(dbOf(api), 100);
  const cancel = await rejection(t, orders.cancelOrder({ orderId: o.id, reason: "too late" }), Code.FailedPrecondition);
  t.is(errorInfo(cancel)?.metadata["current_state"], "EXPIRED");
  const pay = await rejection(t, orders.markOrderPaid({ orderId: o.id, paymentId: "psp-late" }), Code.FailedPrecondition);
  t.is(errorInfo(pay)?.reason, "INVALID_ORDER_STATE");
  t.is((await stockOf(api, merchantId, "EXP-3")).stock, 5, "the stock came back once");
});

test.serial("paid, fulfilled and cancelled orders never expire", async (t) => {
  await createProduct(api, api.merchantA, "EXP-4", 10);
  const paid = await order([{ sku: "EXP-4", quantity: 1 }]);
  const fulfilled = await order([{ sku: "EXP-4", quantity: 2 }]);
  const cancelled = await order([{ sku: "EXP-4", quantity: 3 }]);
  await orders.markOrderPaid({ orderId: paid.id, paymentId: "psp-keep-1" });
  await orders.markOrderPaid({ orderId: fulfilled.id, paymentId: "psp-keep-2" });
  await orders.fulfillOrder({ orderId: fulfilled.id });
  await orders.cancelOrder({ orderId: cancelled.id });
  await pastTtl();
  t.deepEqual(await sweepExpiredOrders(dbOf(api), 100), { due: 0, expired: 0 });
  const states = await Promise.all([paid, fulfilled, cancelled].map(async (o) => (await orders.getOrder({ orderId: o.id })).order!.state));
  t.deepEqual(states, [OrderState.PAID, OrderState.FULFILLED, OrderState.CANCELLED]);
  t.is((await stockOf(api, merchantId, "EXP-4")).stock, 7);
});

test.serial("the sweeper loop drains a backlog larger than its batch, and a watcher sees the order expire", async (t) => {
  await createProduct(api, api.merchantA, "EXP-5", 10);
  const placed = await Promise.all(Array.from({ length: 7 }, () => order([{ sku: "EXP-5", quantity: 1 }])));
  const watched: OrderState[] = [];
  const watching = (async () => {
    for await (const { order: o } of orders.watchOrder({ orderId: placed[0]!.id })) watched.push(o!.state);
  })();
  const sweeper = startOrderSweeper({ db: dbOf(api), log: createLogger("test", "silent"), everyMs: TTL_MS, batch: 2 });
  try {
    await watching;
    await waitFor("every order to expire", async () => ((await stockOf(api, merchantId, "EXP-5")).stock === 10 ? true : undefined), 5000);
  } finally {
    await sweeper.stop();
  }
  t.deepEqual(watched, [OrderState.PENDING_PAYMENT, OrderState.EXPIRED]);
  const states = await Promise.all(placed.map(async (o) => (await orders.getOrder({ orderId: o.id })).order!.state));
  t.true(
    states.every((s) => s === OrderState.EXPIRED),
    "all 7 expired, 2 per scan",
  );
});
