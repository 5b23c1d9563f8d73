/**
 * The SDK's watchOrder follows an order to a final state through what ends
 * a raw WatchOrder stream early: a connection cut (an error) and a server
 * that stops for a deploy (the stream ends without a final state, and the
 * next server answers on the same address).
 */
import test from "ava";
import { catalogModule } from "@stockroom/catalog";
import { freePort, startDropProxy, startTestApi } from "@stockroom/common/testing";
import { ordersModule, type OrderTables } from "@stockroom/orders";
import { createStockroomClient, OrderState, ProductStatus, type Order } from "../src/index.ts";

const port = await freePort();
const modules = (db: Parameters<Parameters<typeof startTestApi<OrderTables>>[1]>[0], deps: { draining: AbortSignal }) => [
  catalogModule(db),
  ordersModule(db, { watchIntervalMs: 50, shutdown: deps.draining, rateLimit: { ratePerSec: 0, burst: 1 } }),
];
const first = await startTestApi<OrderTables>("sdk_watch_order", modules, { config: { port } });
const proxy = await startDropProxy(first.url);
test.after.always(async () => {
  await proxy.close();
  await first.close();
});

const client = (baseUrl: string) => createStockroomClient({ baseUrl, apiKey: first.merchantA.apiKey });
let n = 0;

async function placeOrder(c: ReturnType<typeof client>): Promise<Order> {
  const sku = `SDK-WATCH-${++n}`;
  await c.catalog.createProduct({
    product: { sku, title: "Watched", price: { currencyCode: "EUR", minorUnits: 500n }, stock: 5, status: ProductStatus.ACTIVE },
  });
  return (await c.orders.createOrder({ requestId: `sdk-watch-${n}`, lines: [{ sku, quantity: 1 }] })).order!;
}

/** followed watches orderId through c, running step at each state, and returns the states and versions yielded. */
async function followed(c: ReturnType<typeof client>, orderId: string, step: (o: Order) => Promise<void>): Promise<[OrderState, bigint][]> {
  const seen: [OrderState, bigint][] = [];
  for await (const o of c.watchOrder(orderId)) {
    seen.push([o.state, o.version]);
    await step(o);
  }
  return seen;
}

/** Every state of an order paid and fulfilled, each at its own version. */
const PAID_AND_FULFILLED: [OrderState, bigint][] = [
  [OrderState.PENDING_PAYMENT, 1n],
  [OrderState.PAID, 2n],
  [OrderState.FULFILLED, 3n],
];

test.serial("watchOrder reconnects after its connection is cut and yields each state once, to the final one", async (t) => {
  const c = client(proxy.url);
  const order = await placeOrder(c);
  const seen = await followed(c, order.id, async (o) => {
    if (o.state === OrderState.PENDING_PAYMENT) {
      proxy.cutAll();
      await c.orders.markOrderPaid({ orderId: o.id, paymentId: "psp-sdk-cut" });
    }
    if (o.state === OrderState.PAID) await c.orders.fulfillOrder({ orderId: o.id });
  });
  t.deepEqual(seen, PAID_AND_FULFILLED);
});

test.serial("watchOrder misses no state while it is away: paid and fulfilled while the server could not be reached", async (t) => {
  const c = client(proxy.url);
  const direct = client(first.url);
  const order = await placeOrder(c);
  const seen = await followed(c, order.id, async (o) => {
    if (o.state !== OrderState.PENDING_PAYMENT) return;
    // The watch's way to the server is gone while the order moves twice; it reconnects once the way is back.
    await proxy.refuse();
    await direct.orders.markOrderPaid({ orderId: o.id, paymentId: "psp-sdk-away" });
    await direct.orders.fulfillOrder({ orderId: o.id });
    await proxy.accept();
  });
  t.deepEqual(seen, PAID_AND_FULFILLED);
});

test.serial("watchOrder goes on through a server that stops (its watch ends early) and the next one on the same address", async (t) => {
  const c = client(first.url);
  const order = await placeOrder(c);
  let second: Awaited<ReturnType<typeof startTestApi<OrderTables>>> | undefined;
  t.teardown(() => second?.close());
  const seen: OrderState[] = [];
  for await (const o of c.watchOrder(order.id)) {
    seen.push(o.state);
    if (o.state !== OrderState.PENDING_PAYMENT) continue;
    // A deploy: this server drains (its watch ends without a final state), the next takes its address.
    await first.api.server.close();
    second = await startTestApi<OrderTables>("sdk_watch_order", modules, { databaseUrl: first.databaseUrl, config: { port } });
    await c.orders.cancelOrder({ orderId: o.id, reason: "redeployed" });
  }
  t.deepEqual(seen, [OrderState.PENDING_PAYMENT, OrderState.CANCELLED]);
});
