import test from "ava";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { ChangeSourceKind } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { OrderEventType, OrderState } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import {
  CatalogService,
  createProduct,
  errorInfo,
  vitessOffenders,
  orderEvents,
  OrderService,
  orderStockChanges,
  preconditionViolations,
  rejection,
  startOrders,
  stockOf,
} from "./helpers.ts";

// Serial: the last test checks every statement the others ran.
const TTL_MS = 15 * 60_000;
const draining = new AbortController();
const api = await startOrders("orders_lifecycle", { reservationTtlMs: TTL_MS, shutdown: draining.signal });
test.after.always(() => api.close());
const orders = api.client(OrderService, api.merchantA);
const catalog = api.client(CatalogService, api.merchantA);
const merchantId = api.merchantA.merchantId;
let n = 0;
const requestId = () => `checkout-${++n}`;

test.serial("create reserves every line's stock, snapshots the prices and audits the stock change as the order's", async (t) => {
  const mug = await createProduct(api, api.merchantA, "MUG-1", 10);
  await createProduct(api, api.merchantA, "CUP-1", 5, { price: { currencyCode: "EUR", minorUnits: 300n } });
  const before = Date.now();
  const { order } = await orders.createOrder({
    requestId: requestId(),
    lines: [
      { sku: "MUG-1", quantity: 2 },
      { sku: "CUP-1", quantity: 1 },
    ],
    buyerReference: "customer-7",
  });
  t.is(order!.state, OrderState.PENDING_PAYMENT);
  t.is(order!.version, 1n);
  t.is(order!.etag, `${order!.id}.1`);
  t.is(order!.buyerReference, "customer-7");
  t.deepEqual(
    order!.lines.map((l) => [l.sku, l.productId, l.title, l.quantity, l.unitPrice?.minorUnits, l.lineTotal?.minorUnits]),
    [
      ["MUG-1", mug.id, "Product MUG-1", 2, 1250n, 2500n],
      ["CUP-1", order!.lines[1]!.productId, "Product CUP-1", 1, 300n, 300n],
    ],
  );
  t.deepEqual([order!.total?.currencyCode, order!.total?.minorUnits], ["EUR", 2800n]);
  const expires = timestampMs(order!.expireTime!) - timestampMs(order!.createTime!);
  t.is(expires, TTL_MS);
  t.true(timestampMs(order!.createTime!) >= before - 5);
  t.deepEqual(await stockOf(api, merchantId, "MUG-1"), { stock: 8, version: 2 });
  t.deepEqual(await stockOf(api, merchantId, "CUP-1"), { stock: 4, version: 2 });
  t.deepEqual((await orders.getOrder({ orderId: order!.id })).order, order);

  const { changes } = await catalog.listProductHistory({ sku: "MUG-1" });
  const reserved = changes[0]!;
  t.is(reserved.source?.kind, ChangeSourceKind.ORDER);
  t.is(reserved.source?.reference, order!.id);
  t.deepEqual([reserved.before?.stock, reserved.after?.stock, reserved.version], [10, 8, 2n]);
  t.deepEqual(reserved.changedFields, ["stock"]);
  t.is(reserved.reason, "order created");
  const events = await orderEvents(api, merchantId, order!.id);
  t.deepEqual(
    events.map((e) => [e.eventType, e.version, e.event.type]),
    [["order.created", 1, OrderEventType.CREATED]],
  );
  t.deepEqual(events[0]!.event.order, order);
  t.is(events[0]!.event.merchantId, merchantId);

  // A later price change does not touch what the buyer agreed to.
  await catalog.updateProduct({
    product: { sku: "MUG-1", price: { currencyCode: "EUR", minorUnits: 9999n } },
    updateMask: { paths: ["price"] },
  });
  t.deepEqual((await orders.getOrder({ orderId: order!.id })).order, order);
});

test.serial("pay then fulfil: each transition bumps the version and writes one event; payment is idempotent by payment_id", async (t) => {
  await createProduct(api, api.merchantA, "LAMP-1", 3);
  const { order: created } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "LAMP-1", quantity: 1 }] });
  const id = created!.id;
  const { order: paid } = await orders.markOrderPaid({ orderId: id, paymentId: "psp-100" });
  t.is(paid!.state, OrderState.PAID);
  t.is(paid!.paymentId, "psp-100");
  t.is(paid!.version, 2n);
  t.is(paid!.expireTime, undefined, "a paid order no longer expires");
  t.deepEqual((await orders.markOrderPaid({ orderId: id, paymentId: "psp-100" })).order, paid, "the provider's retry is a no-op");
  const other = await rejection(t, orders.markOrderPaid({ orderId: id, paymentId: "psp-200" }), Code.FailedPrecondition);
  t.is(errorInfo(other)?.reason, "ALREADY_PAID");

  const stale = await rejection(t, orders.fulfillOrder({ orderId: id, etag: created!.etag }), Code.Aborted);
  t.is(errorInfo(stale)?.metadata["current_etag"], paid!.etag);
  const { order: fulfilled } = await orders.fulfillOrder({ orderId: id, etag: paid!.etag });
  t.is(fulfilled!.state, OrderState.FULFILLED);
  t.is(fulfilled!.version, 3n);

  const late = await rejection(t, orders.cancelOrder({ orderId: id, reason: "too late" }), Code.FailedPrecondition);
  t.is(errorInfo(late)?.reason, "INVALID_ORDER_STATE");
  t.is(errorInfo(late)?.metadata["current_state"], "FULFILLED");
  t.deepEqual(preconditionViolations(late), [`ORDER_STATE ${id}`]);
  t.deepEqual(
    (await orderEvents(api, merchantId, id)).map((e) => [e.eventType, e.version, e.event.type, e.event.order?.state]),
    [
      ["order.created", 1, OrderEventType.CREATED, OrderState.PENDING_PAYMENT],
      ["order.paid", 2, OrderEventType.PAID, OrderState.PAID],
      ["order.fulfilled", 3, OrderEventType.FULFILLED, OrderState.FULFILLED],
    ],
  );
  t.deepEqual(await stockOf(api, merchantId, "LAMP-1"), { stock: 2, version: 2 }, "paying and shipping leave the stock alone");

  const { order: unpaid } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "LAMP-1", quantity: 1 }] });
  const early = await rejection(t, orders.fulfillOrder({ orderId: unpaid!.id }), Code.FailedPrecondition);
  t.is(errorInfo(early)?.metadata["current_state"], "PENDING_PAYMENT");
});

test.serial("cancel returns the stock exactly once, from PENDING_PAYMENT or from PAID", async (t) => {
  await createProduct(api, api.merchantA, "SOFA-1", 10);
  const { order: pending } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "SOFA-1", quantity: 3 }] });
  t.is((await stockOf(api, merchantId, "SOFA-1")).stock, 7);
  const { order: cancelled } = await orders.cancelOrder({ orderId: pending!.id, reason: "buyer changed their mind" });
  t.is(cancelled!.state, OrderState.CANCELLED);
  t.is(cancelled!.cancelReason, "buyer changed their mind");
  t.is((await stockOf(api, merchantId, "SOFA-1")).stock, 10);
  const again = await rejection(t, orders.cancelOrder({ orderId: pending!.id }), Code.FailedPrecondition);
  t.is(errorInfo(again)?.metadata["current_state"], "CANCELLED");
  t.is((await stockOf(api, merchantId, "SOFA-1")).stock, 10, "a second cancel returns nothing");
  const audit = await orderStockChanges(api, merchantId, pending!.id);
  t.deepEqual(
    audit.map((c) => [c.source_kind, c.reason, c.sku]),
    [
      ["order", "order created", "SOFA-1"],
      ["order", "order cancelled", "SOFA-1"],
    ],
  );

  const { order: toPay } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "SOFA-1", quantity: 4 }] });
  await orders.markOrderPaid({ orderId: toPay!.id, paymentId: "psp-sofa" });
  t.is((await stockOf(api, merchantId, "SOFA-1")).stock, 6);
  const { order: refunded } = await orders.cancelOrder({ orderId: toPay!.id, reason: "out of delivery area" });
  t.is(refunded!.state, OrderState.CANCELLED);
  t.is(refunded!.paymentId, "psp-sofa");
  t.is((await stockOf(api, merchantId, "SOFA-1")).stock, 10);
  t.deepEqual(
    (await orderEvents(api, merchantId, toPay!.id)).map((e) => e.eventType),
    ["order.created", "order.paid", "order.cancelled"],
  );
});

test.serial("a payment_id pays one order only", async (t) => {
  await createProduct(api, api.merchantA, "DESK-1", 5);
  const { order: first } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "DESK-1", quantity: 1 }] });
  const { order: second } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "DESK-1", quantity: 1 }] });
  await orders.markOrderPaid({ orderId: first!.id, paymentId: "psp-once" });
  const reused = await rejection(t, orders.markOrderPaid({ orderId: second!.id, paymentId: "psp-once" }), Code.FailedPrecondition);
  t.is(errorInfo(reused)?.reason, "PAYMENT_ID_IN_USE");
  t.is((await orders.getOrder({ orderId: second!.id })).order!.state, OrderState.PENDING_PAYMENT);
});

test.serial("list pages newest first with opaque tokens and filters by state", async (t) => {
  await createProduct(api, api.merchantA, "PAGE-1", 100);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++)
    ids.push((await orders.createOrder({ requestId: requestId(), lines: [{ sku: "PAGE-1", quantity: 1 }] })).order!.id);
  for (const id of ids.slice(1, 3)) await orders.markOrderPaid({ orderId: id, paymentId: `psp-${id}` });
  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await orders.listOrders({ pageSize: 3, pageToken });
    t.true(page.orders.length <= 3);
    seen.push(...page.orders.map((o) => o.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  t.deepEqual(seen, [...seen].sort().reverse(), "newest first");
  t.is(new Set(seen).size, seen.length);
  t.true(ids.every((id) => seen.includes(id)));
  const { orders: paid } = await orders.listOrders({ state: OrderState.PAID, pageSize: 1000 });
  t.true(paid.every((o) => o.state === OrderState.PAID));
  t.deepEqual(
    paid.map((o) => o.id).filter((id) => ids.includes(id)),
    [ids[2]!, ids[1]!],
  );
  t.true(paid[0]!.lines.length > 0, "listed orders carry their lines");
  const first = await orders.listOrders({ pageSize: 1 });
  await rejection(t, orders.listOrders({ pageSize: 1, pageToken: first.nextPageToken, state: OrderState.PAID }), Code.InvalidArgument);
});

test.serial("watch streams the order at each change and ends after a final state", async (t) => {
  await createProduct(api, api.merchantA, "WATCH-1", 5);
  const { order } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "WATCH-1", quantity: 1 }] });
  const seen: OrderState[] = [];
  const watching = (async () => {
    for await (const { order: o } of orders.watchOrder({ orderId: order!.id })) {
      seen.push(o!.state);
      if (o!.state === OrderState.PENDING_PAYMENT) await orders.markOrderPaid({ orderId: order!.id, paymentId: "psp-watch" });
      if (o!.state === OrderState.PAID) await orders.fulfillOrder({ orderId: order!.id });
    }
  })();
  await watching;
  t.deepEqual(seen, [OrderState.PENDING_PAYMENT, OrderState.PAID, OrderState.FULFILLED]);
});

test.serial("cancelling after the product was deleted and its SKU re-created returns nothing to the new product", async (t) => {
  await createProduct(api, api.merchantA, "GONE-1", 5);
  const { order } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "GONE-1", quantity: 2 }] });
  await catalog.deleteProduct({ sku: "GONE-1" });
  await createProduct(api, api.merchantA, "GONE-1", 1);
  const { order: cancelled } = await orders.cancelOrder({ orderId: order!.id });
  t.is(cancelled!.state, OrderState.CANCELLED);
  t.deepEqual(await stockOf(api, merchantId, "GONE-1"), { stock: 1, version: 1 });
  t.is((await orderStockChanges(api, merchantId, order!.id)).length, 1, "only the reservation was audited");
});

test.serial("a draining process ends open watches (the order is not final)", async (t) => {
  await createProduct(api, api.merchantA, "WATCH-2", 5);
  const { order } = await orders.createOrder({ requestId: requestId(), lines: [{ sku: "WATCH-2", quantity: 1 }] });
  const seen: OrderState[] = [];
  const watching = (async () => {
    for await (const { order: o } of orders.watchOrder({ orderId: order!.id })) {
      seen.push(o!.state);
      draining.abort();
    }
  })();
  await watching;
  t.deepEqual(seen, [OrderState.PENDING_PAYMENT]);
});

test.serial("Vitess readiness: every statement the order calls ran names one merchant", (t) => {
  t.true(api.queries.length > 100);
  const { unnamed, crossMerchant } = vitessOffenders(api);
  t.deepEqual(unnamed, []);
  t.deepEqual(crossMerchant, [], "one merchant per statement");
});
