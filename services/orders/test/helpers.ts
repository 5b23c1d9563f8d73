import { ConnectError } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { PreconditionFailureSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { OrderEventSchema } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { startTestApi, type TestApi, type TestMerchant } from "@stockroom/common/testing";
import { catalogModule } from "@stockroom/catalog";
import { ordersModule, type OrdersModuleOptions } from "../src/module.ts";
import { sql, type Transaction } from "kysely";
import type { OrderDb } from "../src/store.ts";
import type { OrderTables } from "../src/store.ts";

export { CatalogService, OrderService };
export { errorInfo, fieldViolations, rejection } from "@stockroom/catalog/testing";

/** settle runs the calls at once and splits them into the orders placed and the errors. */
export async function settle<T>(calls: Promise<T>[]): Promise<{ won: T[]; lost: ConnectError[] }> {
  const results = await Promise.allSettled(calls);
  return {
    won: results.filter((r): r is PromiseFulfilledResult<Awaited<T>> => r.status === "fulfilled").map((r) => r.value),
    lost: results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason)),
  };
}

/**
 * startOrders starts the catalog and the orders on their own database for
 * one test file, without a rate limit or a bulkhead unless the options set
 * one (the tests fire hundreds of calls at once on purpose).
 */
export function startOrders(name: string, options: OrdersModuleOptions = {}): Promise<TestApi<OrderTables>> {
  return startTestApi<OrderTables>(name, (db) => [
    catalogModule(db),
    ordersModule(db, {
      rateLimit: { ratePerSec: 0, burst: 1 },
      bulkhead: { perMerchant: 0, total: 0, waitingPerSku: 0, waitMs: 0, queueMs: 0 },
      watchIntervalMs: 50,
      ...options,
    }),
  ]);
}

/** dbOf is the test server's pool, typed for the order tables. */
export function dbOf(api: TestApi): OrderDb {
  return api.api.db;
}

/** createProduct adds an active EUR product through the catalog. */
export async function createProduct(
  api: TestApi,
  merchant: TestMerchant,
  sku: string,
  stock: number,
  overrides: Record<string, unknown> = {},
) {
  const { product } = await api.client(CatalogService, merchant).createProduct({
    product: { sku, title: `Product ${sku}`, price: { currencyCode: "EUR", minorUnits: 1250n }, stock, ...overrides },
  });
  return product!;
}

/** stockOf reads a product's stock and version straight from the database. */
export async function stockOf(api: TestApi, merchantId: string, sku: string): Promise<{ stock: number; version: number }> {
  const row = await dbOf(api)
    .selectFrom("products")
    .select(["stock", "version"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .executeTakeFirstOrThrow();
  return { stock: row.stock, version: Number(row.version) };
}

/** orderEvents decodes an order's outbox events, oldest first. */
export async function orderEvents(api: TestApi, merchantId: string, orderId: string) {
  const rows = await dbOf(api)
    .selectFrom("outbox_events")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("aggregate_type", "=", "order")
    .where("aggregate_id", "=", orderId)
    .orderBy("event_id")
    .execute();
  return rows.map((r) => ({
    eventType: r.event_type,
    version: Number(r.aggregate_version),
    event: fromBinary(OrderEventSchema, r.payload),
  }));
}

/** orderStockChanges lists the product audit entries an order wrote, oldest first. */
export async function orderStockChanges(api: TestApi, merchantId: string, orderId: string) {
  return dbOf(api)
    .selectFrom("product_changes")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("source_ref", "=", orderId)
    .orderBy("change_id")
    .execute();
}

/**
 * holdOpen runs work in a transaction and leaves it open, holding the locks
 * work took, until the returned function is called; the transaction then
 * commits, or rolls back if asked.
 */
async function holdOpen(
  api: TestApi,
  work: (trx: Transaction<OrderTables>) => Promise<unknown>,
  rollBack = false,
): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let held!: () => void;
  const isHeld = new Promise<void>((r) => (held = r));
  const rolledBack = new Error("rolled back");
  const done = dbOf(api)
    .transaction()
    .execute(async (trx) => {
      await work(trx);
      held();
      await released;
      if (rollBack) throw rolledBack;
    })
    .catch((error: unknown) => {
      if (error !== rolledBack) throw error;
    });
  await isHeld;
  return async () => {
    release();
    await done;
  };
}

/** holdLock locks a merchant's product row from a transaction of the test's own until the returned release is called, so orders pile up behind it. */
export function holdLock(api: TestApi, merchantId: string, sku: string): Promise<() => Promise<void>> {
  return holdOpen(api, (trx) =>
    trx.selectFrom("products").select("stock").where("merchant_id", "=", merchantId).where("sku", "=", sku).forUpdate().execute(),
  );
}

/** holdKey inserts a request_id's idempotency key in a transaction left open (rolled back at the end): one claiming the same key waits. */
export function holdKey(api: TestApi, merchantId: string, requestId: string): Promise<() => Promise<void>> {
  return holdOpen(
    api,
    (trx) =>
      sql`insert into idempotency_keys (merchant_id, request_id, method, request_sha256, response, created_at)
        values (${merchantId}, ${requestId}, ${"held"}, ${Buffer.alloc(32)}, ${null}, ${new Date()})`.execute(trx),
    true,
  );
}

/** preconditionViolations lists google.rpc.PreconditionFailure violations as "TYPE subject". */
export function preconditionViolations(error: ConnectError): string[] {
  return error.findDetails(PreconditionFailureSchema).flatMap((d) => d.violations.map((v) => `${v.type} ${v.subject}`));
}

export { namesMerchant, vitessOffenders } from "@stockroom/common/testing";
