import test from "ava";
import { sql } from "kysely";
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { startApi } from "../src/rpc/app.ts";
import { createMerchant } from "../src/rpc/auth.ts";
import { parseApiConfig } from "../src/config.ts";
import { createDatabase, ensureDatabase } from "../src/db/database.ts";
import { NotFoundError, RateLimitedError } from "../src/errors.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { parsePrometheusText, scrape, sumOf } from "../testing/prom-text.ts";
import { testDatabaseUrl, dropTestDatabase } from "../testing/index.ts";

// A real API process on its own database; the catalog service here is a
// stand-in whose calls succeed, fail or are rate limited on demand.
const url = testDatabaseUrl("metrics");
await ensureDatabase(url);
test.after.always(() => dropTestDatabase(url));

test.serial(
  "RPC latency is labelled by method, status code and tier; rate limits are counted; per-merchant minutes are written",
  async (t) => {
    const config = { ...parseApiConfig({}), port: 0, metricsPort: 0, databaseUrl: url, logLevel: "silent" as const, slaFlushMs: 60_000 };
    const api = await startApi({
      name: "test-metrics",
      config,
      migrate: true,
      modules: () => [
        {
          services: [CatalogService],
          migrations: [],
          register: (router) =>
            router.service(CatalogService, {
              getProduct: async (req) => {
                if (req.sku === "LIMITED") throw new RateLimitedError("slow down", 1000);
                throw new NotFoundError("product", req.sku);
              },
              batchGetProducts: async () => ({ products: [], missingSkus: [] }),
            }),
        },
      ],
    });
    let stopped = false;
    t.teardown(() => (stopped ? undefined : api.stop()));
    const enterprise = await createMerchant(api.db, "Enterprise");
    const gold = await createMerchant(api.db, "Unknown tier");
    await api.db.updateTable("merchants").set({ tier: "enterprise" }).where("merchant_id", "=", enterprise.merchantId).execute();
    await api.db.updateTable("merchants").set({ tier: "gold" }).where("merchant_id", "=", gold.merchantId).execute();
    const client = (apiKey: string) => {
      const auth: Interceptor = (next) => (req) => (req.header.set("authorization", `Bearer ${apiKey}`), next(req));
      return createClient(CatalogService, createGrpcTransport({ baseUrl: api.server.url, interceptors: [auth] }));
    };
    const e = client(enterprise.apiKey);
    for (let i = 0; i < 3; i++) await e.batchGetProducts({ skus: ["A"] });
    await t.throwsAsync(e.getProduct({ sku: "NOPE" }), { instanceOf: ConnectError });
    await t.throwsAsync(e.getProduct({ sku: "LIMITED" }), { message: /slow down/ });
    await client(gold.apiKey).batchGetProducts({ skus: ["A"] });
    await t.throwsAsync(client("srk_bogus").batchGetProducts({ skus: [] }));

    const samples = await scrape(`${api.metricsServer!.url}/metrics`);
    const count = (labels: Record<string, string>) =>
      sumOf(samples, "stockroom_rpc_server_duration_seconds_count", { service: "stockroom.catalog.v1.CatalogService", ...labels });
    t.is(count({ method: "BatchGetProducts", code: "OK", tier: "enterprise" }), 3);
    t.is(count({ method: "GetProduct", code: "NOT_FOUND", tier: "enterprise" }), 1);
    t.is(count({ method: "GetProduct", code: "RESOURCE_EXHAUSTED", tier: "enterprise" }), 1);
    t.is(count({ method: "BatchGetProducts", code: "OK", tier: "other" }), 1, "a tier metrics do not know is labelled other");
    t.is(count({ method: "BatchGetProducts", code: "UNAUTHENTICATED", tier: "none" }), 1);
    t.is(sumOf(samples, "stockroom_rate_limit_rejections_total", { method: "GetProduct", tier: "enterprise" }), 1);
    t.false(
      samples.some((s) => Object.values(s.labels).includes(enterprise.merchantId)),
      "no label holds a merchant id",
    );
    t.false(
      samples.some((s) => s.labels["service"] === "grpc.health.v1.Health"),
      "health checks are not user traffic",
    );

    // Stopping writes the last minute of per-merchant statistics.
    await api.stop();
    stopped = true;
    const db = createDatabase<any>({ url, poolSize: 1 });
    t.teardown(() => db.destroy());
    const rows = await db
      .selectFrom("rpc_call_minutes")
      .selectAll()
      .where("merchant_id", "=", enterprise.merchantId)
      .orderBy("method")
      .execute();
    t.deepEqual(
      rows.map((r) => ({ method: r.method, calls: r.calls, client: r.client_errors, server: r.server_errors })),
      [
        { method: "stockroom.catalog.v1.CatalogService/BatchGetProducts", calls: 3, client: 0, server: 0 },
        { method: "stockroom.catalog.v1.CatalogService/GetProduct", calls: 2, client: 2, server: 0 },
      ],
    );
  },
);

test.serial("the pool gauges read their pool when scraped", async (t) => {
  const db = createDatabase<any>({ url, poolSize: 1 });
  t.teardown(() => db.destroy());
  const metrics = createMetrics({ processMetrics: false });
  metrics.watchDatabasePool(db, "main");
  const read = async () => parsePrometheusText(await metrics.registry.metrics());

  // The pool: one connection held by a transaction, a second caller queued behind it.
  let release!: () => void;
  const held = db.transaction().execute(async (trx) => {
    await sql`SELECT 1`.execute(trx);
    await new Promise<void>((r) => (release = r));
  });
  await new Promise((r) => setTimeout(r, 100));
  const queued = sql`SELECT 1`.execute(db);
  await new Promise((r) => setTimeout(r, 50));
  let s = await read();
  t.is(sumOf(s, "stockroom_db_pool_connections_in_use", { pool: "main" }), 1);
  t.is(sumOf(s, "stockroom_db_pool_queued_requests", { pool: "main" }), 1);
  t.is(sumOf(s, "stockroom_db_pool_max_connections", { pool: "main" }), 1);
  release();
  await Promise.all([held, queued]);
  s = await read();
  t.is(sumOf(s, "stockroom_db_pool_queued_requests", { pool: "main" }), 0);
});
