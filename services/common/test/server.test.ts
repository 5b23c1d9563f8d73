import test from "ava";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { catalogModule } from "@stockroom/catalog/module.ts";
import { startTestApi } from "../src/testing.ts";

test("shutdown flips health to NOT_SERVING, finishes in-flight calls, then refuses new ones", async (t) => {
  const api = await startTestApi("server_drain", (db) => [catalogModule(db)]);
  t.teardown(() => api.close().catch(() => {}));
  const catalog = api.client(CatalogService, api.merchantA);
  const health = createClient(Health, createGrpcTransport({ baseUrl: api.url }));

  const watch = health.watch({ service: "" })[Symbol.asyncIterator]();
  t.is((await watch.next()).value?.status, Status.SERVING);

  const calls = Array.from({ length: 40 }, (_, i) =>
    catalog.createProduct({ product: { sku: `DRAIN-${i}`, title: "t", price: { currencyCode: "EUR", minorUnits: 1n } } }),
  );
  await Promise.race(calls); // the server is now busy with the rest
  const closing = api.api.server.close();
  t.is((await watch.next()).value?.status, Status.NOT_SERVING, "watchers learn before the drain");
  const results = await Promise.allSettled(calls);
  await closing;
  t.deepEqual(results.filter((r) => r.status === "rejected"), [], "every in-flight call completed");
  await t.throwsAsync(createClient(Health, createGrpcTransport({ baseUrl: api.url })).check({}));
});
