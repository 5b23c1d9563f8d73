import test from "ava";
import { Code } from "@connectrpc/connect";
import { CatalogService, countRows, fieldViolations, productInit, rejection, startCatalog } from "./helpers.ts";

const api = await startCatalog("catalog_validation");
const catalog = api.client(CatalogService, api.merchantA);
const merchant = api.merchantA.merchantId;
const { product: existing } = await catalog.createProduct({ product: productInit("VALID-1") });
test.after.always(() => api.close());

/** writes counts every row a mutation leaves behind, to prove bad input wrote nothing. */
async function writes() {
  const tables = ["products", "product_changes", "outbox_events", "idempotency_keys"];
  return Promise.all(tables.map((table) => countRows(api, table, merchant)));
}

const createCases: [string, Record<string, unknown>, string][] = [
  ["negative price", { price: { currencyCode: "EUR", minorUnits: -1n } }, "product.price.minor_units"],
  ["unknown currency", { price: { currencyCode: "XYZ", minorUnits: 100n } }, "product.price.currency_code"],
  ["lower-case currency", { price: { currencyCode: "eur", minorUnits: 100n } }, "product.price.currency_code"],
  ["missing price", { price: undefined }, "product.price"],
  ["empty sku", { sku: "" }, "product.sku"],
  ["overlong sku", { sku: "S".repeat(129) }, "product.sku"],
  ["10 kB title", { title: "T".repeat(10_000) }, "product.title"],
  ["blank title", { title: "   " }, "product.title"],
  ["negative stock", { stock: -1 }, "product.stock"],
  ["bad attribute key", { attributes: { "no spaces": "x" } }, "product.attributes.no spaces"],
  ["unknown status", { status: 42 }, "product.status"],
];

for (const [name, override, field] of createCases) {
  test(`create with ${name} is INVALID_ARGUMENT naming ${field}, and writes nothing`, async (t) => {
    const before = await writes();
    const e = await rejection(
      t,
      catalog.createProduct({ product: productInit(`NEW-${name}`, override), requestId: `bad-${name}` }),
      Code.InvalidArgument,
    );
    t.true(fieldViolations(e).includes(field), `violations: ${fieldViolations(e).join(", ")}`);
    t.deepEqual(await writes(), before);
  });
}

const updateCases: [string, Record<string, unknown>, string][] = [
  ["an unknown update_mask path", { product: { sku: "VALID-1", title: "x" }, updateMask: { paths: ["colour"] } }, "update_mask"],
  ["an immutable update_mask path", { product: { sku: "VALID-1" }, updateMask: { paths: ["sku"] } }, "update_mask"],
  ["a malformed etag", { product: { sku: "VALID-1", title: "x", etag: "v1" }, updateMask: { paths: ["title"] } }, "product.etag"],
  [
    "a negative price",
    { product: { sku: "VALID-1", price: { currencyCode: "EUR", minorUnits: -5n } }, updateMask: { paths: ["price"] } },
    "product.price.minor_units",
  ],
  ["a 10 kB title", { product: { sku: "VALID-1", title: "T".repeat(10_000) }, updateMask: { paths: ["title"] } }, "product.title"],
  ["an empty sku", { product: { sku: "", title: "x" }, updateMask: { paths: ["title"] } }, "product.sku"],
];

for (const [name, request, field] of updateCases) {
  test(`update with ${name} is INVALID_ARGUMENT naming ${field}, and writes nothing`, async (t) => {
    const before = await writes();
    const e = await rejection(t, catalog.updateProduct(request), Code.InvalidArgument);
    t.true(fieldViolations(e).includes(field), `violations: ${fieldViolations(e).join(", ")}`);
    t.deepEqual(await writes(), before);
    const { product } = await catalog.getProduct({ sku: "VALID-1" });
    t.is(product!.version, existing!.version);
  });
}

test("several problems are reported together", async (t) => {
  const e = await rejection(
    t,
    catalog.createProduct({ product: productInit("", { title: "", price: { currencyCode: "???", minorUnits: -1n } }) }),
    Code.InvalidArgument,
  );
  t.deepEqual(fieldViolations(e).sort(), ["product.price.currency_code", "product.price.minor_units", "product.sku", "product.title"]);
});

test("other bad input: zero delta, malformed etag on delete, bad page token, no credential", async (t) => {
  t.deepEqual(fieldViolations(await rejection(t, catalog.adjustStock({ sku: "VALID-1", delta: 0 }), Code.InvalidArgument)), ["delta"]);
  t.deepEqual(fieldViolations(await rejection(t, catalog.deleteProduct({ sku: "VALID-1", etag: "nope" }), Code.InvalidArgument)), ["etag"]);
  t.deepEqual(fieldViolations(await rejection(t, catalog.listProducts({ pageToken: "garbage" }), Code.InvalidArgument)), ["page_token"]);
  t.deepEqual(fieldViolations(await rejection(t, catalog.batchGetProducts({ skus: [] }), Code.InvalidArgument)), ["skus"]);
  // Timestamps the binary protocols can carry but no calendar has: year 10000, negative nanos.
  for (const updatedSince of [
    { seconds: 253_402_300_800n, nanos: 0 },
    { seconds: 0n, nanos: -1 },
    { seconds: 0n, nanos: 1_000_000_000 },
  ]) {
    t.deepEqual(fieldViolations(await rejection(t, catalog.listProducts({ updatedSince }), Code.InvalidArgument)), ["updated_since"]);
  }
  const anonymous = api.client(CatalogService, { merchantId: "", apiKey: "not-a-key" });
  await rejection(t, anonymous.getProduct({ sku: "VALID-1" }), Code.Unauthenticated);
  const forged = api.client(CatalogService, { merchantId: "", apiKey: `${api.merchantA.apiKey.slice(0, -4)}AAAA` });
  await rejection(t, forged.getProduct({ sku: "VALID-1" }), Code.Unauthenticated);
});
