import type { ExecutionContext } from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { startTestApi, type TestApi } from "@stockroom/common/testing";
import { catalogModule } from "../src/module.ts";
import type { CatalogTables } from "../src/store.ts";

/** startCatalog starts the catalog on its own database for one test file. */
export function startCatalog(name: string): Promise<TestApi<CatalogTables>> {
  return startTestApi<CatalogTables>(name, (db) => [catalogModule(db)]);
}

export { CatalogService };

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
