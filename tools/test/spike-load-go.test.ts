import { spawnSync } from "node:child_process";
import test from "ava";
import { type Kysely, sql } from "kysely";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { catalogModule } from "@stockroom/catalog";
import { startTestApi } from "@stockroom/common/testing";
import { ordersModule } from "@stockroom/orders";
import { loadClient, runGo } from "../bench/spike-load-go.ts";

// bench:spike's Go load generator against a real orders server: what it reports is what the server answered.
const hasGo = spawnSync("go", ["version"]).status === 0;
const goTest = hasGo ? test : test.skip;

goTest("the Go load generator's open loop sends on schedule and classifies each answer: placed, shed with RetryInfo", async (t) => {
  t.timeout(180_000); // the first build fetches grpc-go from the module proxy
  t.is(loadClient("go"), "go");
  // One place per merchant and no wait: with the row of SPIKE-0 locked, calls beside the one holding the place are shed.
  const api = await startTestApi("tools_spike_load_go", (db) => [
    catalogModule(db),
    ordersModule(db, {
      rateLimit: { ratePerSec: 0, burst: 1 },
      bulkhead: { perMerchant: 1, total: 0, waitingPerSku: 0, waitMs: 0, queueMs: 0 },
    }),
  ]);
  t.teardown(() => api.close());
  const db = api.api.db as Kysely<unknown>;
  const { merchantId, apiKey } = api.merchantA;
  await api.client(CatalogService, api.merchantA).createProduct({
    product: { sku: "SPIKE-0", title: "Doorbuster", price: { currencyCode: "EUR", minorUnits: 2999n }, stock: 1000 },
  });

  const free = await runGo({
    mode: "closed",
    url: api.url,
    apiKey,
    connections: 2,
    skus: 1,
    name: "t",
    buyers: 2,
    seconds: 1,
    warmSeconds: 0,
  });
  t.true(free.placed > 0, "the closed loop placed orders");
  t.deepEqual(free.unexpected, []);

  // The product's row locked from a transaction of the test's own.
  const locked = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const holder = db.transaction().execute(async (trx) => {
    await sql`SELECT stock FROM products WHERE merchant_id = ${merchantId} AND sku = 'SPIKE-0' FOR UPDATE`.execute(trx);
    locked.resolve();
    await release.promise;
  });
  await locked.promise;
  const startAt = performance.timeOrigin + performance.now() + 300;
  const open = runGo({
    mode: "open",
    name: "t",
    url: api.url,
    apiKey,
    connections: 2,
    skus: 1,
    startAt,
    phases: [{ name: "only", seconds: 1, rate: 40 }],
  });
  // The calls in the first half second find the row locked; then it is free.
  setTimeout(() => release.resolve(), 800);
  const report = await open;
  await holder;
  // The schedule's due count is floored at each 2 ms tick, as spike-load.ts's: the last arrival may fall on the loop's end.
  t.true(report.calls.length >= 39 && report.calls.length <= 40, `40 arrivals in a second at 40/s: ${report.calls.length}`);
  t.true(
    report.calls.every((c) => c.at >= 0 && c.at < 1 && c.ms >= 0 && c.via === "grpc"),
    "each call at its second of sending, with a latency",
  );
  const shed = report.calls.filter((c) => c.outcome === "shed");
  const admitted = report.calls.filter((c) => c.outcome === "admitted");
  t.true(shed.length > 0, "calls beside the one holding the place were shed");
  t.true(
    shed.every((c) => c.retryInfo),
    "every shed answer carried RetryInfo",
  );
  t.true(admitted.length > 0, "calls after the release were placed");
  t.is(admitted.length + shed.length, report.calls.length, JSON.stringify(report.unexpected));
  t.is(report.cpuSeconds.length, 1);
  t.true(report.lag.length === 1 && report.lag[0] !== undefined);

  // Everything acknowledged (the warm-up's and the loop's) is stored, with its SKU and quantity.
  const acknowledged = [...free.acknowledged, ...report.acknowledged];
  t.is(report.acknowledged.length >= admitted.length, true);
  const rows = await sql<{ order_id: string; quantity: number }>`
    SELECT o.order_id, l.quantity FROM orders o JOIN order_lines l ON l.merchant_id = o.merchant_id AND l.order_id = o.order_id
    WHERE o.merchant_id = ${merchantId}`.execute(db);
  const stored = new Map(rows.rows.map((r) => [r.order_id, Number(r.quantity)]));
  t.is(stored.size, acknowledged.length);
  t.true(acknowledged.every((a) => a.sku === "SPIKE-0" && stored.get(a.orderId) === a.quantity));
});
