import http2 from "node:http2";
import test from "ava";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { catalogModule } from "@stockroom/catalog";
import { sql } from "kysely";
import { startTestApi, waitFor } from "../testing/index.ts";

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

test("one HTTP/2 connection carrying 15,000 concurrent calls has every one answered: Node's per-session memory cap does not reset them and tear the session down", async (t) => {
  const api = await startTestApi("server_many_streams", (db) => [catalogModule(db)]);
  t.teardown(() => api.close().catch(() => {}));
  // The client's own session cap is lifted as the SDK's is: this tests the server's.
  const session = http2.connect(api.url, { maxSessionMemory: Number.MAX_SAFE_INTEGER });
  t.teardown(() => session.destroy());
  const sessionErrors: string[] = [];
  session.on("error", (e: NodeJS.ErrnoException) => sessionErrors.push(String(e.code)));
  const check = Buffer.alloc(5); // one empty gRPC message: HealthCheckRequest{}
  const outcomes = await Promise.all(
    Array.from(
      { length: 15_000 },
      () =>
        new Promise<string>((resolve) => {
          const stream = session.request({
            ":method": "POST",
            ":path": "/grpc.health.v1.Health/Check",
            "content-type": "application/grpc",
            te: "trailers",
          });
          let status = "none";
          const take = (headers: http2.IncomingHttpHeaders) => {
            if (headers["grpc-status"] !== undefined) status = `grpc-status ${String(headers["grpc-status"])}`;
          };
          stream.on("response", take);
          stream.on("trailers", take);
          stream.on("data", () => {});
          stream.on("error", () => {});
          stream.on("close", () => resolve(stream.rstCode ? `reset ${stream.rstCode}` : status));
          stream.end(check);
        }),
    ),
  );
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
  t.deepEqual(Object.fromEntries(counts), { "grpc-status 0": 15_000 });
  t.deepEqual(sessionErrors, []);
});
