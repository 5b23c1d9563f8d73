import net from "node:net";
import test from "ava";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { catalogModule } from "@stockroom/catalog";
import { sql } from "kysely";
import { startTestApi, waitFor } from "../testing/index.ts";
import { createLogger } from "../src/observe/log.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { startMetricsServer } from "../src/observe/metrics-server.ts";
import { startApiServer } from "../src/rpc/server.ts";

test("shutdown flips health to NOT_SERVING, finishes in-flight calls, then refuses new ones", async (t) => {
  const api = await startTestApi("server_drain", (db) => [catalogModule(db)]);
  t.teardown(() => api.close().catch(() => {}));
  const catalog = api.client(CatalogService, api.merchantA);
  const health = createClient(Health, createGrpcTransport({ baseUrl: api.url }));

  const watch = health.watch({ service: "" })[Symbol.asyncIterator]();
  t.is((await watch.next()).value?.status, Status.SERVING);

  // The products table is locked, so every call is still running on the server when it closes
  // (a call the client started but the server never received is not in flight; it is refused).
  const locker = await api.api.db.connection().execute(async (conn) => {
    await sql`lock tables products write`.execute(conn);
    const calls = Array.from({ length: 40 }, (_, i) =>
      catalog.createProduct({ product: { sku: `DRAIN-${i}`, title: "t", price: { currencyCode: "EUR", minorUnits: 1n } } }),
    );
    await waitFor("the server to hold all 40 calls", async () => api.api.server.inFlight() >= 41 || undefined, 10_000); // + the health watch
    const closing = api.api.server.close();
    t.is((await watch.next()).value?.status, Status.NOT_SERVING, "watchers learn before the drain");
    await sql`unlock tables`.execute(conn);
    return { calls, closing };
  });
  const { calls, closing } = locker;
  const results = await Promise.allSettled(calls);
  await closing;
  t.deepEqual(
    results.filter((r) => r.status === "rejected"),
    [],
    "every in-flight call completed",
  );
  await t.throwsAsync(createClient(Health, createGrpcTransport({ baseUrl: api.url })).check({}));
});

test("a port in use stops start-up with a message that names the setting, the API's and the metrics'", async (t) => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  t.teardown(() => holder.close());
  const port = (holder.address() as net.AddressInfo).port;
  const log = createLogger("test", "silent");
  await t.throwsAsync(startApiServer({ host: "127.0.0.1", port, services: [], routes: () => {}, interceptors: [], log, webDir: false }), {
    message: `PORT ${port} is in use on 127.0.0.1 (stop what holds it, or set PORT to another port; 0 = any free port)`,
  });
  await t.throwsAsync(startMetricsServer({ host: "127.0.0.1", port, metrics: createMetrics() }), {
    message: `METRICS_PORT ${port} is in use (set METRICS_PORT=0 for any free port, or off)`,
  });
});
