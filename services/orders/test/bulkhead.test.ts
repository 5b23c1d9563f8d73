import http2 from "node:http2";
import { setTimeout as delay } from "node:timers/promises";
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { createProduct, errorInfo, holdKey, holdLock, OrderService, startOrders, stockOf } from "./helpers.ts";
import { grpcErrorOf } from "@stockroom/common/testing";

const api = await startOrders("orders_bulkhead", { bulkhead: { perMerchant: 4, total: 0, waitingPerSku: 0, waitMs: 20, queueMs: 0 } });
test.after.always(() => api.close());

/** expectShed checks a call was refused with RESOURCE_EXHAUSTED, RATE_LIMITED and a sane RetryInfo. */
function expectShed(t: import("ava").ExecutionContext, r: PromiseSettledResult<unknown>): void {
  t.is(r.status, "rejected");
  const e = ConnectError.from((r as PromiseRejectedResult).reason);
  t.is(e.code, Code.ResourceExhausted, e.message);
  t.is(errorInfo(e)?.reason, "RATE_LIMITED");
  const delay = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
  t.truthy(delay, "google.rpc.RetryInfo with a retry_delay");
  const ms = Number(delay!.seconds) * 1000 + delay!.nanos / 1e6;
  t.true(ms >= 5 && ms <= 1000, `retry in ${ms} ms`);
}

test("a merchant past its transactions in flight is refused at once with RetryInfo while another merchant's calls go through", async (t) => {
  await createProduct(api, api.merchantA, "BH-1", 100);
  await createProduct(api, api.merchantA, "BH-2", 100);
  await createProduct(api, api.merchantA, "BH-3", 100);
  await createProduct(api, api.merchantB, "BH-1", 100);
  const a = api.client(OrderService, api.merchantA);
  const b = api.client(OrderService, api.merchantB);
  const pair = [
    { sku: "BH-1", quantity: 1 },
    { sku: "BH-2", quantity: 1 },
  ];

  // Two-line orders run one transaction each; with BH-1 held they stay in flight.
  const release = await holdLock(api, api.merchantA.merchantId, "BH-1");
  const admitted = Array.from({ length: 4 }, (_, i) => a.createOrder({ requestId: `in-${i}`, lines: pair }));
  await new Promise((r) => setTimeout(r, 100));
  const shed = await Promise.allSettled([
    ...Array.from({ length: 5 }, (_, i) => a.createOrder({ requestId: `over-${i}`, lines: pair })),
    // A single-line order of another SKU needs a transaction of its own too.
    a.createOrder({ requestId: "over-single", lines: [{ sku: "BH-3", quantity: 1 }] }),
  ]);
  // Answered while the admitted calls still wait: refusals never queue.
  for (const r of shed) expectShed(t, r);
  // Merchant B has its own places.
  t.truthy((await b.createOrder({ requestId: "b-1", lines: [{ sku: "BH-1", quantity: 1 }] })).order);

  await release();
  const settled = await Promise.allSettled(admitted);
  t.true(settled.every((r) => r.status === "fulfilled"));
  t.is((await stockOf(api, api.merchantA.merchantId, "BH-1")).stock, 96, "a refused call reserved nothing");
  t.is((await stockOf(api, api.merchantA.merchantId, "BH-3")).stock, 100);
  // The places are free again.
  t.truthy((await a.createOrder({ requestId: "after", lines: [{ sku: "BH-3", quantity: 1 }] })).order);
});

test("with no wait worth making, a gRPC call is refused before it is decoded (trailers-only, with RetryInfo); over Connect the handler refuses it", async (t) => {
  const early = await startOrders("orders_bulkhead_early", {
    bulkhead: { perMerchant: 1, total: 0, waitingPerSku: 0, waitMs: 0, queueMs: 0 },
  });
  t.teardown(() => early.close());
  await createProduct(early, early.merchantA, "EARLY-1", 10);
  await createProduct(early, early.merchantA, "EARLY-2", 10);
  const pair = [
    { sku: "EARLY-1", quantity: 1 },
    { sku: "EARLY-2", quantity: 1 },
  ];
  const release = await holdLock(early, early.merchantA.merchantId, "EARLY-1");
  const admitted = early.client(OrderService, early.merchantA).createOrder({ requestId: "in", lines: pair });
  await new Promise((r) => setTimeout(r, 100));
  // An undecodable body: refused RESOURCE_EXHAUSTED all the same, so nothing of it was read.
  const headers = await rawGrpcCall(
    early.url,
    `/${OrderService.typeName}/CreateOrder`,
    early.merchantA.apiKey,
    Buffer.from("not a gRPC frame"),
  );
  const refusal = grpcErrorOf(headers);
  t.is(refusal?.code, Code.ResourceExhausted, "grpc-status in the only HEADERS frame");
  t.truthy(refusal?.findDetails(RetryInfoSchema)[0]?.retryDelay, "RetryInfo in grpc-status-details-bin");
  expectShed(
    t,
    (await Promise.allSettled([early.client(OrderService, early.merchantA).createOrder({ requestId: "over", lines: pair })]))[0]!,
  );
  expectShed(
    t,
    (
      await Promise.allSettled([
        early.client(OrderService, early.merchantA, "connect").createOrder({ requestId: "over-connect", lines: pair }),
      ])
    )[0]!,
  );
  // Merchant B has its own places, early as late.
  await createProduct(early, early.merchantB, "EARLY-1", 10);
  t.truthy(
    (await early.client(OrderService, early.merchantB).createOrder({ requestId: "b", lines: [{ sku: "EARLY-1", quantity: 1 }] })).order,
  );
  await release();
  t.truthy((await admitted).order);
});

test("a hot SKU's batch holds one place for all its orders; past ORDER_WAITING_PER_SKU waiting, orders are refused", async (t) => {
  const lane = await startOrders("orders_bulkhead_lane", {
    bulkhead: { perMerchant: 1, total: 0, waitingPerSku: 4, waitMs: 20, queueMs: 0 },
    maxBatch: 2,
  });
  t.teardown(() => lane.close());
  await createProduct(lane, lane.merchantA, "LANE-1", 100);
  const a = lane.client(OrderService, lane.merchantA);
  const release = await holdLock(lane, lane.merchantA.merchantId, "LANE-1");
  // One transaction (the merchant's only place) waits for the row; 4 orders may wait behind it.
  const first = a.createOrder({ requestId: "lane-0", lines: [{ sku: "LANE-1", quantity: 1 }] });
  await new Promise((r) => setTimeout(r, 100));
  const more = Array.from({ length: 7 }, (_, i) => a.createOrder({ requestId: `lane-${i + 1}`, lines: [{ sku: "LANE-1", quantity: 1 }] }));
  await new Promise((r) => setTimeout(r, 100));
  await release();
  const results = await Promise.allSettled([first, ...more]);
  const placed = results.filter((r) => r.status === "fulfilled");
  t.is(placed.length, 5);
  for (const r of results.filter((r) => r.status === "rejected")) expectShed(t, r);
  t.is((await stockOf(lane, lane.merchantA.merchantId, "LANE-1")).stock, 95);
});

test("lone orders wait for their merchant's shared transaction without a place (each transaction holds one); past two transactions' worth waiting they are refused", async (t) => {
  const spread = await startOrders("orders_bulkhead_spread", {
    bulkhead: { perMerchant: 3, total: 0, waitingPerSku: 0, waitMs: 0, queueMs: 0 },
    maxBatch: 2,
  });
  t.teardown(() => spread.close());
  const { merchantId } = spread.merchantA;
  for (let i = 0; i < 14; i++) await createProduct(spread, spread.merchantA, `SP-${i}`, 10);
  const a = spread.client(OrderService, spread.merchantA);
  const order = (i: number) => a.createOrder({ requestId: `sp-${i}`, lines: [{ sku: `SP-${i}`, quantity: 1 }] });
  // The merchant's two shared transactions under way (a place each) wait to claim a key another transaction holds.
  const keys = [await holdKey(spread, merchantId, "sp-0"), await holdKey(spread, merchantId, "sp-1")];
  const first = order(0);
  await new Promise((r) => setTimeout(r, 100));
  const second = order(1);
  await new Promise((r) => setTimeout(r, 100));
  // 12 more lone orders, with one place left: each takes it only to join the queue, so the next two
  // transactions' worth (2 x ORDER_BATCH_MAX) wait and the rest are refused. Orders that kept a place while
  // waiting would have let one in.
  const more = Array.from({ length: 12 }, (_, i) => order(i + 2));
  const refused = await Promise.allSettled(more.slice(4));
  for (const r of refused) expectShed(t, r);
  t.regex(ConnectError.from((refused[0] as PromiseRejectedResult).reason).message, /waiting for a shared transaction/);
  // With the line full, a gRPC call is refused before it is decoded: an undecodable body gets the same refusal.
  const early = grpcErrorOf(
    await rawGrpcCall(spread.url, `/${OrderService.typeName}/CreateOrder`, spread.merchantA.apiKey, Buffer.from("not a gRPC frame")),
  );
  t.is(early?.code, Code.ResourceExhausted, "grpc-status in the only HEADERS frame");
  t.regex(early?.rawMessage ?? "", /waiting for a shared transaction/);
  t.truthy(early?.findDetails(RetryInfoSchema)[0]?.retryDelay, "RetryInfo in grpc-status-details-bin");
  for (const release of keys) await release();
  const placed = await Promise.allSettled([first, second, ...more.slice(0, 4)]);
  t.true(
    placed.every((r) => r.status === "fulfilled"),
    placed.map((r) => (r.status === "rejected" ? String(r.reason) : "ok")).join("; "),
  );
  const stocks = await Promise.all(Array.from({ length: 14 }, (_, i) => stockOf(spread, merchantId, `SP-${i}`)));
  t.deepEqual(
    stocks.map((s) => s.stock),
    Array.from({ length: 14 }, (_, i) => (i < 6 ? 9 : 10)),
  );
});

test("a call past its merchant's places waits in the merchant's line for one; when its wait runs out it is refused with RetryInfo", async (t) => {
  const waiting = await startOrders("orders_bulkhead_line", {
    bulkhead: { perMerchant: 1, total: 0, waitingPerSku: 0, waitMs: 1500, queueMs: 0 },
  });
  t.teardown(() => waiting.close());
  await createProduct(waiting, waiting.merchantA, "LINE-1", 100);
  await createProduct(waiting, waiting.merchantA, "LINE-2", 100);
  const a = waiting.client(OrderService, waiting.merchantA);
  const pair = [
    { sku: "LINE-1", quantity: 1 },
    { sku: "LINE-2", quantity: 1 },
  ];
  // One place: the first call holds it, two wait in line and get it in turn once it is free.
  let release = await holdLock(waiting, waiting.merchantA.merchantId, "LINE-1");
  const first = a.createOrder({ requestId: "line-0", lines: pair });
  await new Promise((r) => setTimeout(r, 100));
  const queued = [1, 2].map((i) => a.createOrder({ requestId: `line-${i}`, lines: pair }));
  await new Promise((r) => setTimeout(r, 100));
  await release();
  const results = await Promise.allSettled([first, ...queued]);
  t.true(
    results.every((r) => r.status === "fulfilled"),
    results.map((r) => (r.status === "rejected" ? String(r.reason) : "ok")).join("; "),
  );

  // A waiter whose place does not come within ORDER_IN_FLIGHT_WAIT_MS is refused.
  release = await holdLock(waiting, waiting.merchantA.merchantId, "LINE-1");
  const holder = a.createOrder({ requestId: "line-3", lines: pair });
  await new Promise((r) => setTimeout(r, 100));
  const started = performance.now();
  const [late] = await Promise.allSettled([a.createOrder({ requestId: "line-4", lines: pair })]);
  const waited = performance.now() - started;
  expectShed(t, late!);
  t.true(waited >= 1400, `refused after waiting ${waited} ms`);
  await release();
  t.truthy((await holder).order);
  t.is((await stockOf(waiting, waiting.merchantA.merchantId, "LINE-1")).stock, 96);
});

/** rawGrpcCall sends one gRPC request with the given body over plain HTTP/2 and returns the response headers (a trailers-only answer's status is there). */
async function rawGrpcCall(url: string, path: string, apiKey: string, body: Buffer): Promise<http2.IncomingHttpHeaders> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": "application/grpc+proto",
        te: "trailers",
        authorization: `Bearer ${apiKey}`,
      });
      req.on("response", resolve);
      req.on("error", reject);
      req.end(body);
      req.resume();
    });
  } finally {
    session.close();
  }
}

test("a merchant's single-line orders under way are capped whatever their SKUs: when its transactions stall, the orders past the cap are refused at once", async (t) => {
  const stalled = await startOrders("orders_bulkhead_under_way", {
    bulkhead: { perMerchant: 3, total: 0, waitingPerSku: 0, waitMs: 0, queueMs: 100 },
    maxBatch: 2,
  });
  t.teardown(() => stalled.close());
  const { merchantId } = stalled.merchantA;
  const skus = Array.from({ length: 6 }, (_, i) => `UW-${i}`);
  for (const sku of skus) await createProduct(stalled, stalled.merchantA, sku, 100);
  const a = stalled.client(OrderService, stalled.merchantA);
  const order = (sku: string, requestId: string) => a.createOrder({ requestId, lines: [{ sku, quantity: 1 }] });
  // The merchant's two shared transactions stall on keys another transaction holds, each holding its SKU's row.
  const keys = [await holdKey(stalled, merchantId, "uw-0"), await holdKey(stalled, merchantId, "uw-1")];
  const first = [order("UW-0", "uw-0"), order("UW-1", "uw-1")];
  await new Promise((r) => setTimeout(r, 200));
  // 60 more, 10 per SKU: each SKU with an order under way queues the next ones of its own, past the shared
  // transactions' line. With nothing answered yet the cap is its floor, 4 x ORDER_BATCH_MAX = 8 under way.
  const more = skus.flatMap((sku, s) => Array.from({ length: 10 }, (_, i) => order(sku, `uw-${s}-${i}`)));
  // What each call got within 1.5 s, the transactions still stalled: a refusal, or nothing yet.
  const early = await Promise.all(
    more.map((p) =>
      Promise.race([
        p.then(
          () => "placed" as const,
          (error: unknown) => ConnectError.from(error),
        ),
        delay(1500).then(() => "pending" as const),
      ]),
    ),
  );
  const refused = early.filter((r) => r instanceof ConnectError);
  t.true(refused.length >= 52, `${refused.length} of 60 refused while 8 are under way`);
  t.true(
    refused.some((e) => /orders of this merchant are under way/.test(e.message)),
    refused.slice(0, 3).join("; "),
  );
  for (const e of refused) expectShed(t, { status: "rejected", reason: e });
  // Nothing answered yet, so nothing says when there will be room: the retry delay is the longest, a second.
  for (const e of refused.filter((e) => /under way/.test(e.message))) t.regex(e.message, /\(0\/s\); retry in 1000 ms$/);
  for (const release of keys) await release();
  const placed = (await Promise.allSettled([...first, ...more])).filter((r) => r.status === "fulfilled").length;
  t.true(placed >= 2 && placed <= 8, `${placed} placed`);
  const stocks = await Promise.all(skus.map((sku) => stockOf(stalled, merchantId, sku)));
  t.is(
    stocks.reduce((sum, s) => sum + 100 - s.stock, 0),
    placed,
    "every placed order took its unit, no refused one did",
  );
  // Answered, the orders are no longer under way: the next one goes through.
  t.truthy((await order("UW-5", "uw-after")).order);
});
