import type { ExecutionContext } from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { startTestApi, type TestApi } from "@stockroom/common/testing";
import { inTransaction } from "@stockroom/common/db";
import { newUlid } from "@stockroom/common";
import { NO_MERCHANDISING, type Product } from "../src/domain.ts";
import { catalogModule } from "../src/module.ts";
import { lockProducts, writeProducts, type ProductWrite } from "../src/product-writes.ts";
import type { CatalogDb, CatalogTables } from "../src/store.ts";

/** startCatalog starts the catalog on its own database for one test file. */
export function startCatalog(name: string): Promise<TestApi<CatalogTables>> {
  return startTestApi<CatalogTables>(name, (db) => [catalogModule(db)]);
}

export { CatalogService };
/** The catalog's event encoder, for other packages' tests of what they read off the wire. */
export { encodeProductEvent } from "../src/event-codec.ts";

/** productInit returns a valid product with overrides. */
export function productInit(sku: string, overrides: Record<string, unknown> = {}) {
  return {
    sku,
    title: `Product ${sku}`,
    description: "A fine product",
    price: { currencyCode: "EUR", minorUnits: 1999n },
    stock: 10,
    attributes: { color: "red" },
    ...overrides,
  };
}

/** rejection awaits a call that must fail and returns its ConnectError with the expected code. */
export async function rejection(t: ExecutionContext, call: Promise<unknown>, code: Code): Promise<ConnectError> {
  const error = await t.throwsAsync(call);
  const ce = ConnectError.from(error);
  t.is(ce.code, code, `expected ${Code[code]}, got ${Code[ce.code]}: ${ce.message}`);
  return ce;
}

export function errorInfo(error: ConnectError) {
  return error.findDetails(ErrorInfoSchema)[0];
}

export function fieldViolations(error: ConnectError): string[] {
  return error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
}

/** countRows counts a merchant's rows in a table, straight from the database. */
export async function countRows(api: TestApi, table: string, merchantId: string): Promise<number> {
  const { sql } = await import("kysely");
  const result = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM ${sql.table(table)} WHERE merchant_id = ${merchantId}`.execute(
    api.api.db,
  );
  return Number(result.rows[0]!.n);
}

/** newProduct is a new product's first version, made at `at`, for writing changes without the API. */
export function newProduct(sku: string, title: string, at: Date): Product {
  return {
    id: newUlid(),
    sku,
    title,
    description: "",
    priceMinor: 100,
    currency: "EUR",
    stock: 1,
    status: "active",
    attributes: {},
    ...NO_MERCHANDISING,
    version: 1,
    createdAt: at,
    updatedAt: at,
  };
}

/**
 * writeInOneTransaction changes the merchant's products through the
 * product-write port in one transaction, as a bulk chunk does: from
 * BATCH_MIN_EVENTS changes on, their events go out as batch rows. Missing
 * SKUs are created, existing ones get the price; it returns the states after.
 */
export async function writeInOneTransaction(
  h: { db: CatalogDb },
  merchant: { merchantId: string },
  skus: string[],
  priceMinor = 1500,
): Promise<Product[]> {
  return inTransaction(h.db, async (trx) => {
    const current = await lockProducts(trx, merchant.merchantId, skus);
    const writes: ProductWrite[] = skus.map((sku) => {
      const before = current.get(sku);
      if (before) return { kind: "update", before, fields: { ...before, priceMinor }, changedFields: ["price"] };
      return {
        kind: "create",
        product: {
          id: newUlid(),
          sku,
          title: `Product ${sku}`,
          description: "made in one transaction",
          priceMinor,
          currency: "EUR",
          stock: 5,
          status: "active",
          attributes: { color: "teal" },
          ...NO_MERCHANDISING,
        },
      };
    });
    return writeProducts(trx, { merchantId: merchant.merchantId, actor: "test", sourceKind: "bulk_job", sourceRef: newUlid() }, writes);
  });
}
