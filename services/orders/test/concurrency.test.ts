import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderState, type Order } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import {
  createProduct,
  dbOf,
  errorInfo,
  OrderService,
  orderStockChanges,
  preconditionViolations,
  rejection,
  startOrders,
  stockOf,
} from "./helpers.ts";

const api = await startOrders("orders_concurrency");
test.after.always(() => api.close());
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;

test("500 concurrent orders for a SKU with stock 100: exactly 100 win, 400 get a clean FAILED_PRECONDITION", async (t) => {
  await createProduct(api, api.merchantA, "HOT-1", 100);
  const results = await Promise.allSettled(
    Array.from({ length: 500 }, (_, i) => orders.createOrder({ requestId: `rush-${i}`, lines: [{ sku: "HOT-1", quantity: 1 }] })),
  );
  const won = results.filter((r) => r.status === "fulfilled").map((r) => r.value.order!);
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.is(won.length, 100);
  t.is(refused.length, 400);
  for (const e of refused) {
    t.is(e.code, Code.FailedPrecondition, e.message);
    t.is(errorInfo(e)?.reason, "INSUFFICIENT_STOCK");
    t.is(errorInfo(e)?.metadata["sku"], "HOT-1");
    t.is(errorInfo(e)?.metadata["available"], "0");
    t.deepEqual(preconditionViolations(e), ["INSUFFICIENT_STOCK HOT-1"]);
  }
  t.is(new Set(won.map((o) => o.id)).size, 100);
  t.deepEqual(await stockOf(api, merchantId, "HOT-1"), { stock: 0, version: 101 });
  // The audit trail is one unbroken chain: every reservation took one unit from the stock the previous left.
  const chain = await dbOf(api)
    .selectFrom("product_changes")
    .select(["version", "before_state", "after_state", "source_kind"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "HOT-1")
    .orderBy("version")
    .execute();
  const stocks = chain.map((c) => (typeof c.after_state === "string" ? JSON.parse(c.after_state) : c.after_state).stock as number);
  t.deepEqual(
    stocks,
    Array.from({ length: 101 }, (_, i) => 100 - i),
  );
  t.is(chain.filter((c) => c.source_kind === "order").length, 100);
  const lines = await dbOf(api)
    .selectFrom("order_lines")
    .select("order_id")
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "HOT-1")
    .execute();
  t.is(lines.length, 100, "one order row per winner");
});

test("a multi-line order whose last line is short reserves nothing and names the short line", async (t) => {
  await createProduct(api, api.merchantA, "SET-A", 10);
  await createProduct(api, api.merchantA, "SET-B", 10);
  await createProduct(api, api.merchantA, "SET-C", 2);
  const e = await rejection(
    t,
    orders.createOrder({
      requestId: "short-1",
      lines: [
        { sku: "SET-A", quantity: 1 },
        { sku: "SET-B", quantity: 4 },
        { sku: "SET-C", quantity: 3 },
      ],
    }),
    Code.FailedPrecondition,
  );
  t.is(errorInfo(e)?.reason, "INSUFFICIENT_STOCK");
  t.deepEqual(errorInfo(e)?.metadata, { sku: "SET-C", available: "2", requested: "3" });
  t.deepEqual(preconditionViolations(e), ["INSUFFICIENT_STOCK SET-C"]);
  for (const [sku, stock] of [
    ["SET-A", 10],
    ["SET-B", 10],
    ["SET-C", 2],
  ] as const) {
    t.deepEqual(await stockOf(api, merchantId, sku), { stock, version: 1 }, sku);
  }
  // Every short line is named at once.
  const both = await rejection(
    t,
    orders.createOrder({
      requestId: "short-2",
      lines: [
        { sku: "SET-A", quantity: 11 },
        { sku: "SET-C", quantity: 3 },
      ],
    }),
    Code.FailedPrecondition,
  );
  t.deepEqual(preconditionViolations(both), ["INSUFFICIENT_STOCK SET-A", "INSUFFICIENT_STOCK SET-C"]);
});

test("orders sharing SKUs in opposite line orders never deadlock or oversell", async (t) => {
  await createProduct(api, api.merchantA, "PAIR-X", 60);
  await createProduct(api, api.merchantA, "PAIR-Y", 60);
  const results = await Promise.allSettled(
    Array.from({ length: 100 }, (_, i) =>
      orders.createOrder({
        requestId: `pair-${i}`,
        lines:
          i % 2 === 0
            ? [
                { sku: "PAIR-X", quantity: 1 },
                { sku: "PAIR-Y", quantity: 1 },
              ]
            : [
                { sku: "PAIR-Y", quantity: 1 },
                { sku: "PAIR-X", quantity: 1 },
              ],
      }),
    ),
  );
  const failures = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.is(results.length - failures.length, 60);
  t.true(
    failures.every((e) => e.code === Code.FailedPrecondition),
    failures.map((e) => e.message).join("\n"),
  );
  t.is((await stockOf(api, merchantId, "PAIR-X")).stock, 0);
  t.is((await stockOf(api, merchantId, "PAIR-Y")).stock, 0);
});

/** race runs the calls at once and splits them into the one expected winner and the losers. */
async function race<T>(t: import("ava").ExecutionContext, calls: Promise<T>[]): Promise<{ winner: T; lost: ConnectError[] }> {
  const results = await Promise.allSettled(calls);
  const won = results.filter((r): r is PromiseFulfilledResult<Awaited<T>> => r.status === "fulfilled").map((r) => r.value);
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.is(won.length, 1, `exactly one winner; losers: ${lost.map((e) => e.message).join("; ")}`);
  t.true(lost.every((e) => e.code === Code.FailedPrecondition));
  return { winner: won[0]!, lost };
}

test("concurrent transitions on one order: exactly one wins, the others see its state", async (t) => {
  await createProduct(api, api.merchantA, "RACE-1", 5);
  const { order } = await orders.createOrder({ requestId: "race-1", lines: [{ sku: "RACE-1", quantity: 2 }] });
  const id = order!.id;

  const cancels = await race(
    t,
    Array.from({ length: 20 }, (_, i) => orders.cancelOrder({ orderId: id, reason: `cancel ${i}` })),
  );
  t.is(cancels.winner.order!.version, 2n);
  t.true(cancels.lost.every((e) => errorInfo(e)?.metadata["current_state"] === "CANCELLED"));
  t.is((await stockOf(api, merchantId, "RACE-1")).stock, 5);
  t.is((await orderStockChanges(api, merchantId, id)).length, 2, "reserved once, returned once");

  const { order: second } = await orders.createOrder({ requestId: "race-2", lines: [{ sku: "RACE-1", quantity: 1 }] });
  const pays = await race(
    t,
    Array.from({ length: 20 }, (_, i) => orders.markOrderPaid({ orderId: second!.id, paymentId: `psp-race-${i}` })),
  );
  t.true(pays.lost.every((e) => errorInfo(e)?.reason === "ALREADY_PAID"));

  // From PAID, cancel and fulfil exclude each other.
  const ends = await race<{ order?: Order }>(
    t,
    Array.from({ length: 20 }, (_, i) =>
      i % 2 === 0 ? orders.cancelOrder({ orderId: second!.id }) : orders.fulfillOrder({ orderId: second!.id }),
    ),
  );
  const final = ends.winner.order!;
  t.is(final.version, 3n);
  t.true(
    ends.lost.every((e) => errorInfo(e)?.metadata["current_state"] === (final.state === OrderState.CANCELLED ? "CANCELLED" : "FULFILLED")),
  );
  t.is((await stockOf(api, merchantId, "RACE-1")).stock, final.state === OrderState.CANCELLED ? 5 : 4);
});
