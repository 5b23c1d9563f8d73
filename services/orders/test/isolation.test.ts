import test from "ava";
import { Code } from "@connectrpc/connect";
import { createProduct, OrderService, rejection, startOrders, stockOf } from "./helpers.ts";

const api = await startOrders("orders_isolation");
const a = api.client(OrderService, api.merchantA);
const b = api.client(OrderService, api.merchantB);
await createProduct(api, api.merchantA, "SECRET-1", 10);
const { order: secret } = await a.createOrder({ requestId: "a-1", lines: [{ sku: "SECRET-1", quantity: 2 }], buyerReference: "a's buyer" });
test.after.always(() => api.close());

test.serial("merchant B cannot see or change merchant A's order: every call is NOT_FOUND", async (t) => {
  const orderId = secret!.id;
  await rejection(t, b.getOrder({ orderId }), Code.NotFound);
  await rejection(t, b.markOrderPaid({ orderId, paymentId: "psp-b" }), Code.NotFound);
  await rejection(t, b.cancelOrder({ orderId, reason: "pwned" }), Code.NotFound);
  await rejection(t, b.cancelOrder({ orderId, etag: secret!.etag }), Code.NotFound);
  await rejection(t, b.fulfillOrder({ orderId }), Code.NotFound);
  await rejection(t, b.watchOrder({ orderId })[Symbol.asyncIterator]().next(), Code.NotFound);
  t.false((await b.listOrders({})).orders.some((o) => o.id === orderId));
  t.deepEqual((await a.getOrder({ orderId })).order, secret, "A's order is untouched");
  t.is((await stockOf(api, api.merchantA.merchantId, "SECRET-1")).stock, 8);
});

test.serial("merchant B cannot order merchant A's products: its own catalog has no such SKU", async (t) => {
  const e = await rejection(t, b.createOrder({ requestId: "b-1", lines: [{ sku: "SECRET-1", quantity: 1 }] }), Code.FailedPrecondition);
  t.regex(e.message, /no product has SKU "SECRET-1"/);
  t.is((await stockOf(api, api.merchantA.merchantId, "SECRET-1")).stock, 8);
});

test.serial("both merchants order the same SKU from their own stock", async (t) => {
  await createProduct(api, api.merchantB, "SECRET-1", 3);
  const { order } = await b.createOrder({ requestId: "b-2", lines: [{ sku: "SECRET-1", quantity: 3 }] });
  t.not(order!.lines[0]!.productId, secret!.lines[0]!.productId);
  t.is((await stockOf(api, api.merchantB.merchantId, "SECRET-1")).stock, 0);
  t.is((await stockOf(api, api.merchantA.merchantId, "SECRET-1")).stock, 8);
  t.deepEqual(
    (await b.listOrders({})).orders.map((o) => o.id),
    [order!.id],
  );
});
