/**
 * WatchOrder polls (watchIntervalMs): an order paid and then fulfilled or
 * cancelled between two of its looks is still streamed at PAID, as
 * MarkOrderPaid answered it. The interval here is long (1 s), so both
 * transitions land within one.
 */
import test from "ava";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { OrderState, type Order } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { createProduct, dbOf, OrderService, startOrders, vitessOffenders } from "./helpers.ts";
import { paidBetween } from "../src/domain.ts";

const api = await startOrders("orders_watch", { watchIntervalMs: 1_000 });
test.after.always(() => api.close());
const orders = api.client(OrderService, api.merchantA);
let n = 0;

/** placeAndWatch places an order of sku, runs then once it is seen PENDING_PAYMENT, and collects what the watch streamed. */
async function placeAndWatch(sku: string, then: (orderId: string) => Promise<Order[]>): Promise<{ streamed: Order[]; answers: Order[] }> {
  await createProduct(api, api.merchantA, sku, 5);
  const { order } = await orders.createOrder({ requestId: `watch-${++n}`, lines: [{ sku, quantity: 1 }] });
  const streamed: Order[] = [];
  let answers: Order[] = [];
  for await (const { order: o } of orders.watchOrder({ orderId: order!.id })) {
    streamed.push(o!);
    if (o!.state === OrderState.PENDING_PAYMENT) answers = await then(order!.id);
  }
  return { streamed, answers };
}

test("paid then cancelled within one look: the watch streams PAID as MarkOrderPaid answered it, then CANCELLED", async (t) => {
  const { streamed, answers } = await placeAndWatch("WATCH-PC", async (orderId) => [
    (await orders.markOrderPaid({ orderId, paymentId: "psp-pc" })).order!,
    (await orders.cancelOrder({ orderId, reason: "buyer changed their mind" })).order!,
  ]);
  t.deepEqual(
    streamed.map((o) => [o.state, o.version]),
    [
      [OrderState.PENDING_PAYMENT, 1n],
      [OrderState.PAID, 2n],
      [OrderState.CANCELLED, 3n],
    ],
  );
  t.deepEqual(streamed.slice(1), answers, "each streamed state is the order as its transition answered it");
  t.is(streamed[1]!.etag, `${streamed[1]!.id}.2`);
  t.is(streamed[1]!.cancelReason, "");
  t.is(timestampMs(streamed[1]!.paidTime!), timestampMs(streamed[1]!.updateTime!));
  t.deepEqual(streamed[2]!.paidTime, streamed[1]!.paidTime, "the cancelled order keeps when it was paid");
  t.is(streamed[0]!.paidTime, undefined);
});

test("paid then fulfilled within one look: PENDING_PAYMENT, PAID, FULFILLED", async (t) => {
  const { streamed, answers } = await placeAndWatch("WATCH-PF", async (orderId) => [
    (await orders.markOrderPaid({ orderId, paymentId: "psp-pf" })).order!,
    (await orders.fulfillOrder({ orderId })).order!,
  ]);
  t.deepEqual(
    streamed.map((o) => o.state),
    [OrderState.PENDING_PAYMENT, OrderState.PAID, OrderState.FULFILLED],
  );
  t.deepEqual(streamed.slice(1), answers);
});

test("cancelled unpaid: nothing is made up between", async (t) => {
  const { streamed } = await placeAndWatch("WATCH-C", async (orderId) => [(await orders.cancelOrder({ orderId })).order!]);
  t.deepEqual(
    streamed.map((o) => o.state),
    [OrderState.PENDING_PAYMENT, OrderState.CANCELLED],
  );
});

test("an order paid before paid_at was recorded: dated by its last change while PAID, undated once it moved on", async (t) => {
  await createProduct(api, api.merchantA, "WATCH-OLD", 5);
  const { order } = await orders.createOrder({ requestId: `watch-${++n}`, lines: [{ sku: "WATCH-OLD", quantity: 1 }] });
  const orderId = order!.id;
  await orders.markOrderPaid({ orderId, paymentId: "psp-old" });
  const forget = () =>
    dbOf(api)
      .updateTable("orders")
      .set({ paid_at: null })
      .where("merchant_id", "=", api.merchantA.merchantId)
      .where("order_id", "=", orderId)
      .execute();
  await forget();
  const paid = (await orders.getOrder({ orderId })).order!;
  t.deepEqual(paid.paidTime, paid.updateTime);
  await orders.fulfillOrder({ orderId });
  await forget();
  t.is((await orders.getOrder({ orderId })).order!.paidTime, undefined);
});

test.serial("many open watches of a merchant cost one statement a look, not one each; each still sees its own order move", async (t) => {
  await createProduct(api, api.merchantA, "WATCH-MANY", 100);
  const placed = await Promise.all(
    Array.from(
      { length: 40 },
      async () => (await orders.createOrder({ requestId: `watch-${++n}`, lines: [{ sku: "WATCH-MANY", quantity: 1 }] })).order!,
    ),
  );
  const stop = new AbortController();
  const seen = new Map<string, OrderState[]>();
  const watching = placed.map(async ({ id }) => {
    const states: OrderState[] = [];
    seen.set(id, states);
    try {
      for await (const { order: o } of orders.watchOrder({ orderId: id }, { signal: stop.signal })) states.push(o!.state);
    } catch {
      // Aborted below.
    }
  });
  await new Promise((r) => setTimeout(r, 200));
  const versionReads = () => api.queries.filter(({ sql }) => /^select `order_id`, `version` from `orders`/.test(sql));
  const before = versionReads().length;
  await new Promise((r) => setTimeout(r, 2_500));
  const looks = versionReads().length - before;
  t.true(looks >= 1 && looks <= 3, `${looks} version reads in 2.5 s of 1 s looks for 40 streams`);
  t.is(versionReads().at(-1)!.parameters.length, 41, "the merchant and its 40 watched orders, in one statement");
  await orders.cancelOrder({ orderId: placed[7]!.id });
  await watching[7];
  t.deepEqual(seen.get(placed[7]!.id), [OrderState.PENDING_PAYMENT, OrderState.CANCELLED]);
  stop.abort();
  await Promise.all(watching);
  t.deepEqual(seen.get(placed[8]!.id), [OrderState.PENDING_PAYMENT], "the others did not move");
  t.deepEqual(vitessOffenders(api).crossMerchant, [], "one merchant per statement");
});

test("a watch opened again from version 1 streams the PAID it missed, then the order as it is; from version 2, only the order", async (t) => {
  await createProduct(api, api.merchantA, "WATCH-AGAIN", 5);
  const { order } = await orders.createOrder({ requestId: `watch-${++n}`, lines: [{ sku: "WATCH-AGAIN", quantity: 1 }] });
  const orderId = order!.id;
  const paid = (await orders.markOrderPaid({ orderId, paymentId: "psp-again" })).order!;
  const fulfilled = (await orders.fulfillOrder({ orderId })).order!;
  const watch = async (sinceVersion: bigint) => {
    const streamed: Order[] = [];
    for await (const { order: o } of orders.watchOrder({ orderId, sinceVersion })) streamed.push(o!);
    return streamed;
  };
  t.deepEqual(await watch(1n), [paid, fulfilled]);
  t.deepEqual(await watch(2n), [fulfilled]);
  t.deepEqual(await watch(0n), [fulfilled], "a first watch starts from the order as it is");
});

test("paidBetween: only an unpaid order seen two transitions on, paid", (t) => {
  const at = new Date("2026-12-05T10:00:00Z");
  const paidAt = new Date("2026-12-05T10:00:01Z");
  const base = {
    id: "01M93HBXF2YNP3HQCYKN8XV7RM",
    buyerReference: "",
    currency: "USD",
    lines: [],
    totalMinor: 0,
    createdAt: at,
    expireAt: at,
  };
  const pending = {
    ...base,
    state: "pending_payment",
    paymentId: null,
    cancelReason: "",
    version: 1,
    updatedAt: at,
    paidAt: null,
  } as const;
  const later = new Date("2026-12-05T10:00:02Z");
  const fulfilled = { ...base, state: "fulfilled", paymentId: "p", cancelReason: "", version: 3, updatedAt: later, paidAt } as const;
  t.like(paidBetween(pending, fulfilled), { state: "paid", version: 2, updatedAt: paidAt, paymentId: "p" });
  t.is(paidBetween(pending, { ...fulfilled, version: 2, state: "paid" }), undefined, "one transition: nothing passed");
  t.is(paidBetween(pending, { ...fulfilled, paidAt: null }), undefined, "paid before paid_at: its time is unknown");
  t.is(paidBetween({ ...fulfilled, state: "paid", version: 2 }, fulfilled), undefined);
});
