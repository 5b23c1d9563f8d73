import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { createProduct, dbOf, errorInfo, OrderService, startOrders, stockOf } from "./helpers.ts";

const api = await startOrders("orders_bulkhead", { bulkhead: { perMerchant: 4, total: 0 } });
test.after.always(() => api.close());

test("a merchant past its calls in flight is refused at once with RetryInfo while another merchant's calls go through", async (t) => {
  await createProduct(api, api.merchantA, "BH-1", 100);
  await createProduct(api, api.merchantB, "BH-1", 100);
  const a = api.client(OrderService, api.merchantA);
  const b = api.client(OrderService, api.merchantB);

  // Hold merchant A's row so its admitted calls stay in flight.
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const holder = dbOf(api)
    .transaction()
    .execute(async (trx) => {
      await trx
        .selectFrom("products")
        .select("stock")
        .where("merchant_id", "=", api.merchantA.merchantId)
        .where("sku", "=", "BH-1")
        .forUpdate()
        .execute();
      locked();
      await released;
    });
  await isLocked;

  const admitted: Promise<unknown>[] = [];
  for (let i = 0; i < 4; i++) admitted.push(a.createOrder({ requestId: `in-${i}`, lines: [{ sku: "BH-1", quantity: 1 }] }));
  await new Promise((r) => setTimeout(r, 100));
  const shed = await Promise.allSettled(
    Array.from({ length: 6 }, (_, i) => a.createOrder({ requestId: `over-${i}`, lines: [{ sku: "BH-1", quantity: 1 }] })),
  );
  // Answered while the admitted calls still wait: refusals never queue.
  for (const r of shed) {
    t.is(r.status, "rejected");
    const e = ConnectError.from((r as PromiseRejectedResult).reason);
    t.is(e.code, Code.ResourceExhausted, e.message);
    t.is(errorInfo(e)?.reason, "RATE_LIMITED");
    const delay = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
    t.truthy(delay, "google.rpc.RetryInfo with a retry_delay");
    const ms = Number(delay!.seconds) * 1000 + delay!.nanos / 1e6;
    t.true(ms >= 5 && ms <= 1000, `retry in ${ms} ms`);
  }
  // Merchant B has its own places.
  t.truthy((await b.createOrder({ requestId: "b-1", lines: [{ sku: "BH-1", quantity: 1 }] })).order);

  release();
  await holder;
  const settled = await Promise.allSettled(admitted);
  t.true(settled.every((r) => r.status === "fulfilled"));
  t.is((await stockOf(api, api.merchantA.merchantId, "BH-1")).stock, 96, "a refused call reserved nothing");
  // The places are free again.
  t.truthy((await a.createOrder({ requestId: "after", lines: [{ sku: "BH-1", quantity: 1 }] })).order);
});
