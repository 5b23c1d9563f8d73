/**
 * The product fields added in 2026-12 (gtin, brand, compare_at_price,
 * weight_grams): rules, update masks, clearing, the audit trail and events.
 */
import test from "ava";
import { Code } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { ProductEventSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { gtinProblem } from "../src/domain.ts";
import { CatalogService, fieldViolations, productInit, rejection, startCatalog } from "./helpers.ts";

const api = await startCatalog("catalog_merchandising");
const catalog = api.client(CatalogService, api.merchantA);
const merchant = api.merchantA.merchantId;
test.after.always(() => api.close());

const eur = (minorUnits: bigint) => ({ currencyCode: "EUR", minorUnits });

test("GTIN check digits: GTIN-8, UPC-A, EAN-13 and GTIN-14 pass; a wrong digit or length is named", (t) => {
  for (const ok of ["96385074", "036000291452", "4006381333931", "10614141000415", "00012345600012"]) t.is(gtinProblem(ok), undefined, ok);
  t.is(gtinProblem("4006381333932"), "has check digit 2, but its digits give 1");
  t.is(gtinProblem("400638133393"), "has check digit 3, but its digits give 0");
  t.is(gtinProblem("12345"), "must be 8, 12, 13 or 14 digits");
  t.is(gtinProblem("40063813339 1"), "must be 8, 12, 13 or 14 digits");
  // What a spreadsheet makes of a GTIN it took for a number.
  t.is(
    gtinProblem("4.00638E+12"),
    "must be 8, 12, 13 or 14 digits, not a number in scientific notation (a spreadsheet showed it so and saved it rounded): keep the column as text",
  );
  t.is(
    gtinProblem("36000291452"),
    "must be 8, 12, 13 or 14 digits, not 11 (a spreadsheet may have dropped a leading 0: keep the column as text)",
  );
  t.is(gtinProblem("036000291452"), undefined, "the same UPC-A with its 0");
});

test("create and read the new fields; unset ones read back empty", async (t) => {
  const { product } = await catalog.createProduct({
    product: productInit("M-1", { gtin: "4006381333931", brand: "Stabilo", compareAtPrice: eur(1500n), weightGrams: 120 }),
  });
  t.is(product!.gtin, "4006381333931");
  t.is(product!.brand, "Stabilo");
  t.deepEqual(product!.compareAtPrice, { $typeName: "stockroom.type.v1.Money", ...eur(1500n) });
  t.is(product!.weightGrams, 120);
  t.deepEqual((await catalog.getProduct({ sku: "M-1" })).product, product);
  const { product: plain } = await catalog.createProduct({ product: productInit("M-2") });
  t.is(plain!.gtin, "");
  t.is(plain!.brand, "");
  t.is(plain!.compareAtPrice, undefined);
  t.is(plain!.weightGrams, undefined);
  const row = await api.api.db
    .selectFrom("products")
    .select(["gtin", "brand", "compare_at_minor", "weight_grams"])
    .where("sku", "=", "M-2")
    .executeTakeFirstOrThrow();
  t.deepEqual(row, { gtin: null, brand: null, compare_at_minor: null, weight_grams: null });
});

test("update masks set and clear each field; history and events carry them", async (t) => {
  await catalog.createProduct({ product: productInit("M-3") });
  const { product: set } = await catalog.updateProduct({
    product: { sku: "M-3", brand: "Acme", weightGrams: 0, gtin: "96385074", compareAtPrice: eur(2000n) },
  });
  t.is(set!.brand, "Acme");
  t.is(set!.weightGrams, 0, "weight 0 is a weight, not 'not known'");
  t.is(set!.version, 2n);
  const { product: cleared } = await catalog.updateProduct({
    product: { sku: "M-3" },
    updateMask: { paths: ["brand", "compare_at_price", "weight_grams"] },
  });
  t.is(cleared!.brand, "");
  t.is(cleared!.compareAtPrice, undefined);
  t.is(cleared!.weightGrams, undefined);
  t.is(cleared!.gtin, "96385074", "a field the mask does not name is kept");
  const { changes } = await catalog.listProductHistory({ sku: "M-3" });
  t.deepEqual(changes[0]!.changedFields, ["brand", "compare_at_price", "weight_grams"]);
  t.deepEqual(changes[1]!.changedFields, ["gtin", "brand", "compare_at_price", "weight_grams"]);
  t.is(changes[0]!.before!.brand, "Acme");
  t.is(changes[0]!.after!.brand, "");
  const events = await api.api.db
    .selectFrom("outbox_events")
    .select(["payload", "aggregate_version"])
    .where("merchant_id", "=", merchant)
    .where("event_type", "=", "product.updated")
    .orderBy("event_id")
    .execute();
  const mine = events.map((e) => fromBinary(ProductEventSchema, e.payload)).filter((e) => e.product!.sku === "M-3");
  t.deepEqual(
    mine.map((e) => [e.product!.brand, e.product!.weightGrams, e.changedFields]),
    [
      ["Acme", 0, ["gtin", "brand", "compare_at_price", "weight_grams"]],
      ["", undefined, ["brand", "compare_at_price", "weight_grams"]],
    ],
  );
});

test("compare_at_price is in the price's currency: a different one, or a currency change that keeps it, is refused and writes nothing", async (t) => {
  const usd = await rejection(
    t,
    catalog.createProduct({ product: productInit("M-4", { compareAtPrice: { currencyCode: "USD", minorUnits: 100n } }) }),
    Code.InvalidArgument,
  );
  t.deepEqual(fieldViolations(usd), ["product.compare_at_price.currency_code"]);
  await catalog.createProduct({ product: productInit("M-5", { compareAtPrice: eur(999n) }) });
  const kept = await rejection(
    t,
    catalog.updateProduct({ product: { sku: "M-5", price: { currencyCode: "USD", minorUnits: 500n } }, updateMask: { paths: ["price"] } }),
    Code.InvalidArgument,
  );
  t.regex(kept.rawMessage, /compare_at_price|compare-at/);
  const both = await catalog.updateProduct({
    product: { sku: "M-5", price: { currencyCode: "USD", minorUnits: 500n }, compareAtPrice: { currencyCode: "USD", minorUnits: 700n } },
    updateMask: { paths: ["price", "compare_at_price"] },
  });
  t.is(both.product!.compareAtPrice!.currencyCode, "USD");
  const trail = await api.api.db
    .selectFrom("product_changes")
    .select("sku")
    .where("merchant_id", "=", merchant)
    .where("sku", "in", ["M-4", "M-5"])
    .execute();
  t.deepEqual(
    trail.map((r) => r.sku),
    ["M-5", "M-5"],
    "only M-5's create and its good update",
  );
});

const bad: [string, Record<string, unknown>, string][] = [
  ["a GTIN with a wrong check digit", { gtin: "4006381333932" }, "product.gtin"],
  ["a GTIN of 10 digits", { gtin: "0123456789" }, "product.gtin"],
  ["a brand of 201 characters", { brand: "B".repeat(201) }, "product.brand"],
  ["a brand with a line break", { brand: "Ac\nme" }, "product.brand"],
  ["a negative compare-at price", { compareAtPrice: eur(-1n) }, "product.compare_at_price.minor_units"],
  ["a negative weight", { weightGrams: -5 }, "product.weight_grams"],
];
for (const [name, override, field] of bad) {
  test(`create with ${name} is INVALID_ARGUMENT naming ${field}`, async (t) => {
    const e = await rejection(
      t,
      catalog.createProduct({ product: productInit(`BAD-${field}-${name.length}`, override) }),
      Code.InvalidArgument,
    );
    t.true(fieldViolations(e).includes(field), fieldViolations(e).join(", "));
  });
}
