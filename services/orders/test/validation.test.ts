import test from "ava";
import { Code } from "@connectrpc/connect";
import { ProductStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import type { OrderState } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { newUlid } from "@stockroom/common";
import {
  createProduct,
  dbOf,
  errorInfo,
  fieldViolations,
  OrderService,
  preconditionViolations,
  rejection,
  startOrders,
} from "./helpers.ts";

const api = await startOrders("orders_validation");
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;
await createProduct(api, api.merchantA, "OK-1", 10);
await createProduct(api, api.merchantA, "DRAFT-1", 10, { status: ProductStatus.DRAFT });
await createProduct(api, api.merchantA, "USD-1", 10, { price: { currencyCode: "USD", minorUnits: 500n } });
test.after.always(() => api.close());

/** writes counts every row an order call could leave behind, to prove a refused call wrote nothing. */
async function writes() {
  const tables = ["orders", "order_lines", "outbox_events", "idempotency_keys", "product_changes"] as const;
  return Promise.all(
    tables.map(async (table) => {
      const { n } = await dbOf(api)
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("merchant_id", "=", merchantId)
        .executeTakeFirstOrThrow();
      return Number(n);
    }),
  );
}

const line = (sku: string, quantity = 1) => ({ sku, quantity });
const invalidCases: [string, Record<string, unknown>, string[]][] = [
  ["no request_id", { requestId: "", lines: [line("OK-1")] }, ["request_id"]],
  ["a 129-character request_id", { requestId: "r".repeat(129), lines: [line("OK-1")] }, ["request_id"]],
  ["no lines", { lines: [] }, ["lines"]],
  ["101 lines", { lines: Array.from({ length: 101 }, (_, i) => line(`SKU-${i}`)) }, ["lines"]],
  ["an empty SKU", { lines: [line("")] }, ["lines[0].sku"]],
  ["a zero quantity", { lines: [line("OK-1", 0)] }, ["lines[0].quantity"]],
  ["a negative quantity", { lines: [line("OK-1", -3)] }, ["lines[0].quantity"]],
  ["a repeated SKU", { lines: [line("OK-1"), line("OK-1")] }, ["lines[1].sku"]],
  ["a 129-character buyer_reference", { lines: [line("OK-1")], buyerReference: "b".repeat(129) }, ["buyer_reference"]],
  [
    "several problems, all reported at once",
    { requestId: "", lines: [line("OK-1", 0), line(" padded "), line("OK-1")], buyerReference: "b".repeat(200) },
    ["buyer_reference", "lines[0].quantity", "lines[1].sku", "lines[2].sku", "request_id"],
  ],
];

for (const [name, request, fields] of invalidCases) {
  test(`create with ${name} is INVALID_ARGUMENT naming ${fields.join(", ")}, and writes nothing`, async (t) => {
    const before = await writes();
    const e = await rejection(t, orders.createOrder({ requestId: `bad-${name}`, ...request }), Code.InvalidArgument);
    t.deepEqual(fieldViolations(e).sort(), fields);
    t.deepEqual(await writes(), before);
  });
}

const unavailableCases: [string, { sku: string; quantity: number }[], string, string[]][] = [
  ["an unknown SKU", [line("OK-1"), line("NOPE-1")], "PRODUCT_NOT_FOUND", ["PRODUCT_NOT_FOUND NOPE-1"]],
  ["a draft product", [line("DRAFT-1")], "PRODUCT_NOT_ACTIVE", ["PRODUCT_NOT_ACTIVE DRAFT-1"]],
  ["two currencies", [line("OK-1"), line("USD-1")], "CURRENCY_MISMATCH", ["CURRENCY_MISMATCH USD-1"]],
  [
    "an unknown SKU and a short line",
    [line("NOPE-2"), line("OK-1", 11)],
    "PRODUCT_NOT_FOUND",
    ["PRODUCT_NOT_FOUND NOPE-2", "INSUFFICIENT_STOCK OK-1"],
  ],
];

for (const [name, lines, reason, violations] of unavailableCases) {
  test(`an order with ${name} is FAILED_PRECONDITION (${reason}) listing every bad line, and writes nothing`, async (t) => {
    const before = await writes();
    const e = await rejection(t, orders.createOrder({ requestId: `unavailable-${name}`, lines }), Code.FailedPrecondition);
    t.is(errorInfo(e)?.reason, reason);
    t.deepEqual(preconditionViolations(e), violations);
    t.deepEqual(await writes(), before);
  });
}

test("other calls validate their ids, payment ids, etags, reasons and filters, all at once", async (t) => {
  const id = newUlid();
  t.deepEqual(fieldViolations(await rejection(t, orders.getOrder({ orderId: "" }), Code.InvalidArgument)), ["order_id"]);
  t.deepEqual(
    fieldViolations(await rejection(t, orders.watchOrder({ orderId: "nope" })[Symbol.asyncIterator]().next(), Code.InvalidArgument)),
    ["order_id"],
  );
  t.deepEqual(fieldViolations(await rejection(t, orders.markOrderPaid({ orderId: "x", paymentId: "" }), Code.InvalidArgument)), [
    "order_id",
    "payment_id",
  ]);
  t.deepEqual(
    fieldViolations(await rejection(t, orders.markOrderPaid({ orderId: id, paymentId: "p".repeat(129) }), Code.InvalidArgument)),
    ["payment_id"],
  );
  t.deepEqual(
    fieldViolations(await rejection(t, orders.cancelOrder({ orderId: id, etag: "v1", reason: "r".repeat(501) }), Code.InvalidArgument)),
    ["etag", "reason"],
  );
  t.deepEqual(fieldViolations(await rejection(t, orders.fulfillOrder({ orderId: id, etag: "v1" }), Code.InvalidArgument)), ["etag"]);
  t.deepEqual(fieldViolations(await rejection(t, orders.listOrders({ state: 42 as OrderState }), Code.InvalidArgument)), ["state"]);
  t.deepEqual(fieldViolations(await rejection(t, orders.listOrders({ pageSize: -1 }), Code.InvalidArgument)), ["page_size"]);
  t.deepEqual(fieldViolations(await rejection(t, orders.listOrders({ pageToken: "garbage" }), Code.InvalidArgument)), ["page_token"]);
  const missing = await rejection(t, orders.getOrder({ orderId: id }), Code.NotFound);
  t.is(errorInfo(missing)?.reason, "NOT_FOUND");
  await rejection(t, orders.cancelOrder({ orderId: id }), Code.NotFound);
});
