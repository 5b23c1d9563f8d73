import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { createProduct, errorInfo, OrderService, startOrders, stockOf } from "./helpers.ts";

const api = await startOrders("orders_rate_limit", { rateLimit: { ratePerSec: 5, burst: 10 } });
test.after.always(() => api.close());

test("a merchant over its rate gets RESOURCE_EXHAUSTED with RetryInfo while another merchant's calls go through", async (t) => {
  await createProduct(api, api.merchantA, "RL-1", 1000);
  await createProduct(api, api.merchantB, "RL-1", 1000);
  const a = api.client(OrderService, api.merchantA);
  const b = api.client(OrderService, api.merchantB);
  const results = await Promise.allSettled(
    Array.from({ length: 30 }, (_, i) => a.createOrder({ requestId: `a-${i}`, lines: [{ sku: "RL-1", quantity: 1 }] })),
  );
  const ok = results.filter((r) => r.status === "fulfilled").length;
  const shed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.true(ok >= 10 && ok <= 15, `the burst (10) and what refilled meanwhile pass: ${ok}`);
  t.is(ok + shed.length, 30);
  for (const e of shed) {
    t.is(e.code, Code.ResourceExhausted, e.message);
    t.is(errorInfo(e)?.reason, "RATE_LIMITED");
    const delay = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
    t.truthy(delay, "google.rpc.RetryInfo with a retry_delay");
    const ms = Number(delay!.seconds) * 1000 + delay!.nanos / 1e6;
    t.true(ms > 0 && ms <= 200, `retry in ${ms} ms (one token at 5/s)`);
  }
  t.is((await stockOf(api, api.merchantA.merchantId, "RL-1")).stock, 1000 - ok, "a shed call reserved nothing");

  // Merchant B has its own bucket.
  const { order } = await b.createOrder({ requestId: "b-1", lines: [{ sku: "RL-1", quantity: 1 }] });
  t.truthy(order);
  // A waiting out its retry_delay gets through again.
  await new Promise((r) => setTimeout(r, 250));
  t.truthy((await a.createOrder({ requestId: "a-later", lines: [{ sku: "RL-1", quantity: 1 }] })).order);
});
