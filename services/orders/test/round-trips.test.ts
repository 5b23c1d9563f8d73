/**
 * The database work of the hottest calls, counted: statements (as the query
 * observer sees them) and round trips to the server (mysql2's
 * diagnostics channel: deferred writes ride with the next statement, so a
 * call makes fewer round trips than statements). A change that adds a round
 * trip to UpdateProduct or CreateOrder shows up here, not only as CPU and
 * latency in bench:catalog and bench:orders.
 */
import dc from "node:diagnostics_channel";
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestApi } from "@stockroom/common/testing";
import { catalogModule } from "@stockroom/catalog";
import { ordersModule } from "../src/module.ts";
import type { OrderTables } from "../src/store.ts";
import { CatalogService, OrderService } from "./helpers.ts";

// No health probes or call-statistics flushes: nothing but the calls themselves talks to the database.
const api = await startTestApi<OrderTables>(
  "orders_round_trips",
  (db) => [catalogModule(db), ordersModule(db, { rateLimit: { ratePerSec: 0, burst: 1 } })],
  { config: { healthProbeMs: 0, slaFlushMs: 0 } },
);
test.after.always(() => api.close());
const catalog = api.client(CatalogService, api.merchantA);
const orders = api.client(OrderService, api.merchantA);

let roundTrips = 0;
const onQuery = () => roundTrips++;
dc.subscribe("tracing:mysql2:query:start", onQuery);
test.after.always(() => dc.unsubscribe("tracing:mysql2:query:start", onQuery));

/** counted runs call and returns the statements it ran (their heads) and its round trips. */
async function counted(call: () => Promise<unknown>): Promise<{ statements: string[]; roundTrips: number }> {
  api.queries.length = 0;
  roundTrips = 0;
  await call();
  return { statements: api.queries.map((q) => q.sql.split(" (")[0]!.split(" where ")[0]!), roundTrips };
}

test.serial("UpdateProduct with a request_id, from the state the server last saw: 6 statements in 1 round trip", async (t) => {
  let { product } = await catalog.createProduct({
    product: { sku: "RT-1", title: "Round trips", price: { currencyCode: "EUR", minorUnits: 100n }, stock: 5 },
  });
  // The first call of a key also reads the key (the auth cache): warm it.
  ({ product } = await catalog.updateProduct({
    product: { sku: "RT-1", etag: product!.etag, title: "Warm" },
    updateMask: { paths: ["title"] },
  }));
  const { statements, roundTrips } = await counted(() =>
    catalog.updateProduct({
      requestId: "rt-update-1",
      product: { sku: "RT-1", etag: product!.etag, price: { currencyCode: "EUR", minorUnits: 200n } },
      updateMask: { paths: ["price"] },
    }),
  );
  t.deepEqual(statements, [
    "begin",
    "update `products` set `stock` = if(`version` = ? and `product_id` = ?, ?, -1), `title` = ?, `description` = ?, `price_minor` = ?, `currency` = ?, `status` = ?, `attributes` = ?, `gtin` = ?, `brand` = ?, `compare_at_minor` = ?, `weight_grams` = ?, `version` = ?, `updated_at` = ?",
    "insert into `product_changes`",
    "insert into `outbox_events`",
    "insert into `idempotency_keys`",
    "commit",
  ]);
  t.is(roundTrips, 1);
});

test.serial(
  "UpdateProduct with the etag of a state another writer moved on from: a stale write, its ROLLBACK, then the lock: ABORTED",
  async (t) => {
    const { product } = await catalog.createProduct({
      product: { sku: "RT-3", title: "Round trips", price: { currencyCode: "EUR", minorUnits: 100n }, stock: 5 },
    });
    // Another writer (another replica, a bulk job, an order) moves the row on.
    await orders.createOrder({ requestId: "rt-order-3", lines: [{ sku: "RT-3", quantity: 1 }] });
    let error: unknown;
    const { statements, roundTrips } = await counted(() =>
      catalog
        .updateProduct({ product: { sku: "RT-3", etag: product!.etag, title: "Too late" }, updateMask: { paths: ["title"] } })
        .catch((e: unknown) => {
          error = e;
        }),
    );
    t.is(ConnectError.from(error).code, Code.Aborted);
    t.deepEqual(
      statements.map((s) => s.split(" set ")[0]),
      [
        "begin",
        "update `products`",
        "insert into `product_changes`",
        "insert into `outbox_events`",
        "commit",
        "rollback",
        "begin",
        "select * from `products`",
        "rollback",
      ],
    );
    t.is(roundTrips, 4, "the stale write, its ROLLBACK, the lock, the ROLLBACK");
  },
);

test.serial("UpdateProduct without an etag: the locking path's 2 round trips, whatever the server saw", async (t) => {
  await catalog.createProduct({
    product: { sku: "RT-4", title: "Round trips", price: { currencyCode: "EUR", minorUnits: 100n }, stock: 5 },
  });
  const { statements, roundTrips } = await counted(() =>
    catalog.updateProduct({ product: { sku: "RT-4", title: "No etag" }, updateMask: { paths: ["title"] } }),
  );
  t.deepEqual(
    statements.map((s) => s.split(" set ")[0]),
    ["begin", "select * from `products`", "update `products`", "insert into `product_changes`", "insert into `outbox_events`", "commit"],
  );
  t.is(roundTrips, 2);
});

test.serial(
  "CreateOrder with a request_id: 10 statements in 2 round trips (the products' locks; the writes, the key and the COMMIT)",
  async (t) => {
    await catalog.createProduct({
      product: { sku: "RT-2", title: "Round trips", price: { currencyCode: "EUR", minorUnits: 100n }, stock: 5 },
    });
    const { statements, roundTrips } = await counted(() =>
      orders.createOrder({ requestId: "rt-order-1", lines: [{ sku: "RT-2", quantity: 1 }], buyerReference: "rt" }),
    );
    t.deepEqual(statements, [
      "begin",
      "select * from `products`",
      "update `products` set `stock` = `stock` + ?, `version` = `version` + ?, `updated_at` = ?",
      "insert into `product_changes`",
      "insert into `outbox_events`",
      "insert into `orders`",
      "insert into `order_lines`",
      "insert into `outbox_events`",
      "insert into `idempotency_keys`",
      "commit",
    ]);
    t.is(roundTrips, 2);
  },
);
