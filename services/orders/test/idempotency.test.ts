import test from "ava";
import { Code } from "@connectrpc/connect";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { CancelOrderResponseSchema, CreateOrderResponseSchema } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import {
  CatalogService,
  createProduct,
  errorInfo,
  fieldViolations,
  orderEvents,
  OrderService,
  rejection,
  startOrders,
  stockOf,
} from "./helpers.ts";

const api = await startOrders("orders_idempotency");
test.after.always(() => api.close());
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;
const bytes = <S extends DescMessage>(schema: S, message: MessageShape<S>) => Buffer.from(toBinary(schema, message)).toString("base64");

test("a retry after a lost response returns the same order and reserves nothing more, even when retries race", async (t) => {
  await createProduct(api, api.merchantA, "IDEM-1", 10);
  const request = { requestId: "checkout-77:merchant-a", lines: [{ sku: "IDEM-1", quantity: 3 }], buyerReference: "c-77" };
  const first = await orders.createOrder(request);
  const retries = await Promise.all(Array.from({ length: 10 }, () => orders.createOrder(request)));
  for (const again of retries) t.is(bytes(CreateOrderResponseSchema, again), bytes(CreateOrderResponseSchema, first));
  t.deepEqual(await stockOf(api, merchantId, "IDEM-1"), { stock: 7, version: 2 });
  t.is((await orderEvents(api, merchantId, first.order!.id)).length, 1);
});

test("racing first attempts with one request_id create one order", async (t) => {
  await createProduct(api, api.merchantA, "IDEM-2", 10);
  const request = { requestId: "checkout-78", lines: [{ sku: "IDEM-2", quantity: 2 }] };
  const replies = await Promise.all(Array.from({ length: 10 }, () => orders.createOrder(request)));
  t.is(new Set(replies.map((r) => r.order!.id)).size, 1);
  t.is((await stockOf(api, merchantId, "IDEM-2")).stock, 8);
});

test("the same request_id with other lines is INVALID_ARGUMENT (REQUEST_ID_MISMATCH) and reserves nothing", async (t) => {
  await createProduct(api, api.merchantA, "IDEM-3", 10);
  await orders.createOrder({ requestId: "checkout-79", lines: [{ sku: "IDEM-3", quantity: 1 }] });
  const e = await rejection(
    t,
    orders.createOrder({ requestId: "checkout-79", lines: [{ sku: "IDEM-3", quantity: 2 }] }),
    Code.InvalidArgument,
  );
  t.is(errorInfo(e)?.reason, "REQUEST_ID_MISMATCH");
  t.deepEqual(fieldViolations(e), ["request_id"]);
  t.is((await stockOf(api, merchantId, "IDEM-3")).stock, 9);
});

test("a refused order does not burn its request_id: the retry runs once stock is back", async (t) => {
  await createProduct(api, api.merchantA, "IDEM-4", 1);
  const request = { requestId: "checkout-80", lines: [{ sku: "IDEM-4", quantity: 2 }] };
  await rejection(t, orders.createOrder(request), Code.FailedPrecondition);
  await api.client(CatalogService, api.merchantA).adjustStock({ sku: "IDEM-4", delta: 5 });
  const { order } = await orders.createOrder(request);
  t.is(order!.lines[0]!.quantity, 2);
  t.is((await stockOf(api, merchantId, "IDEM-4")).stock, 4);
});

test("a replayed cancel returns the first response and returns the stock once", async (t) => {
  await createProduct(api, api.merchantA, "IDEM-5", 10);
  const { order } = await orders.createOrder({ requestId: "checkout-81", lines: [{ sku: "IDEM-5", quantity: 4 }] });
  const cancel = { orderId: order!.id, reason: "saga compensation", requestId: "checkout-81:cancel" };
  const replies = await Promise.all(Array.from({ length: 5 }, () => orders.cancelOrder(cancel)));
  t.is(new Set(replies.map((r) => bytes(CancelOrderResponseSchema, r))).size, 1);
  t.is((await stockOf(api, merchantId, "IDEM-5")).stock, 10);
  t.deepEqual(
    (await orderEvents(api, merchantId, order!.id)).map((e) => e.eventType),
    ["order.created", "order.cancelled"],
  );
});

test("request ids are per merchant", async (t) => {
  await createProduct(api, api.merchantA, "IDEM-6", 5);
  await createProduct(api, api.merchantB, "IDEM-6", 5);
  const request = { requestId: "shared-id", lines: [{ sku: "IDEM-6", quantity: 1 }] };
  const a = await orders.createOrder(request);
  const b = await api.client(OrderService, api.merchantB).createOrder(request);
  t.not(a.order!.id, b.order!.id);
  t.is((await stockOf(api, api.merchantB.merchantId, "IDEM-6")).stock, 4);
});
