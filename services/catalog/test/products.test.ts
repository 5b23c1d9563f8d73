import test from "ava";
import { Code } from "@connectrpc/connect";
import { fromBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ChangeSourceKind, ChangeType, ProductEventSchema, ProductStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { CatalogService, errorInfo, productInit, rejection, startCatalog } from "./helpers.ts";
import { vitessOffenders } from "@stockroom/common/testing";

// Serial: the last test checks every statement the others ran.
const api = await startCatalog("catalog_products");
const catalog = api.client(CatalogService, api.merchantA);
test.after.always(() => api.close());

test.serial("create then read by SKU and by id returns what was written", async (t) => {
  const { product } = await catalog.createProduct({ product: productInit("MUG-1", { status: ProductStatus.DRAFT }) });
  t.regex(product!.id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
  t.is(product!.version, 1n);
  t.is(product!.etag, `${product!.id}.1`);
  t.is(product!.status, ProductStatus.DRAFT);
  t.deepEqual((await catalog.getProduct({ sku: "MUG-1" })).product, product);
  t.deepEqual((await catalog.getProduct({ id: product!.id })).product, product);
  const dup = await rejection(t, catalog.createProduct({ product: productInit("MUG-1") }), Code.AlreadyExists);
  t.is(errorInfo(dup)?.reason, "ALREADY_EXISTS");
});

test.serial("update applies only the masked fields; attributes.<key> sets and removes single keys", async (t) => {
  await catalog.createProduct({ product: productInit("MUG-2", { attributes: { color: "red", size: "L" } }) });
  const { product } = await catalog.updateProduct({
    product: { sku: "MUG-2", title: "ignored", price: { currencyCode: "USD", minorUnits: 500n }, attributes: { material: "clay" } },
    updateMask: { paths: ["price", "attributes.material", "attributes.size"] },
  });
  t.is(product!.title, "Product MUG-2");
  t.deepEqual(product!.price, { $typeName: "stockroom.type.v1.Money", currencyCode: "USD", minorUnits: 500n });
  t.deepEqual(product!.attributes, { color: "red", material: "clay" });
  t.is(product!.version, 2n);
  // An update that changes nothing keeps the version and writes no history.
  const { product: same } = await catalog.updateProduct({ product: { sku: "MUG-2", stock: 10 }, updateMask: { paths: ["stock"] } });
  t.is(same!.version, 2n);
  // No mask: the fields the request sets (AIP-134).
  const { product: implied } = await catalog.updateProduct({ product: { sku: "MUG-2", description: "new words", stock: 3 } });
  t.is(implied!.description, "new words");
  t.is(implied!.stock, 3);
  t.is(implied!.title, "Product MUG-2");
  const { changes } = await catalog.listProductHistory({ sku: "MUG-2" });
  t.deepEqual(
    changes.map((c) => c.changedFields),
    [
      ["description", "stock"],
      ["price", "attributes.material", "attributes.size"],
      ["title", "description", "price", "stock", "status", "attributes", "gtin", "brand", "compare_at_price", "weight_grams"],
    ],
  );
});

test.serial("a stale etag on delete is ABORTED; the current one deletes, and history outlives the product", async (t) => {
  const { product: v1 } = await catalog.createProduct({ product: productInit("MUG-3") });
  const { product: v2 } = await catalog.adjustStock({ sku: "MUG-3", delta: 4, etag: v1!.etag, reason: "recount" });
  t.is(v2!.stock, 14);
  const stale = await rejection(t, catalog.deleteProduct({ sku: "MUG-3", etag: v1!.etag }), Code.Aborted);
  t.is(errorInfo(stale)?.metadata["current_etag"], v2!.etag);
  const { product: last } = await catalog.deleteProduct({ sku: "MUG-3", etag: v2!.etag });
  t.deepEqual(last, v2);
  await rejection(t, catalog.getProduct({ sku: "MUG-3" }), Code.NotFound);
  const { changes } = await catalog.listProductHistory({ sku: "MUG-3" });
  t.deepEqual(
    changes.map((c) => c.type),
    [ChangeType.DELETED, ChangeType.UPDATED, ChangeType.CREATED],
  );
  t.deepEqual(
    changes.map((c) => c.version),
    [3n, 2n, 1n],
  );
  const [deleted, adjusted] = changes;
  t.deepEqual(deleted!.before, v2);
  t.is(deleted!.after, undefined);
  t.is(adjusted!.reason, "recount");
  t.is(adjusted!.before!.stock, 10);
  t.is(adjusted!.after!.stock, 14);
  t.is(adjusted!.actor, `api_key:${api.merchantA.apiKey.split("_")[2]}`);
  t.is(adjusted!.source!.kind, ChangeSourceKind.API);
});

test.serial("every change leaves one outbox event in its transaction, in version order", async (t) => {
  await catalog.createProduct({ product: productInit("MUG-4") });
  await catalog.updateProduct({ product: { sku: "MUG-4", title: "Renamed" }, updateMask: { paths: ["title"] } });
  await catalog.adjustStock({ sku: "MUG-4", delta: -2 });
  const rows = await api.api.db
    .selectFrom("outbox_events")
    .selectAll()
    .where("merchant_id", "=", api.merchantA.merchantId)
    .where("event_type", "like", "product.%")
    .orderBy("event_id")
    .execute();
  const events = rows.map((r) => fromBinary(ProductEventSchema, r.payload)).filter((e) => e.product!.sku === "MUG-4");
  t.deepEqual(
    events.map((e) => [e.type, e.product!.version, e.changedFields]),
    [
      [
        ChangeType.CREATED,
        1n,
        ["title", "description", "price", "stock", "status", "attributes", "gtin", "brand", "compare_at_price", "weight_grams"],
      ],
      [ChangeType.UPDATED, 2n, ["title"]],
      [ChangeType.UPDATED, 3n, ["stock"]],
    ],
  );
  t.true(events.every((e) => e.merchantId === api.merchantA.merchantId));
});

test.serial("list pages by SKU with opaque tokens, and by update time from a high-water mark", async (t) => {
  for (let i = 0; i < 7; i++) await catalog.createProduct({ product: productInit(`PAGE-${i}`) });
  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await catalog.listProducts({ pageSize: 3, pageToken });
    t.true(page.products.length <= 3);
    seen.push(...page.products.map((p) => p.sku));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  t.deepEqual(seen, [...seen].sort());
  t.true(["PAGE-0", "PAGE-6", "MUG-1"].every((s) => seen.includes(s)));
  t.is(new Set(seen).size, seen.length);

  const mark = new Date(Date.now() - 1);
  await catalog.updateProduct({ product: { sku: "PAGE-5", title: "changed" }, updateMask: { paths: ["title"] } });
  await catalog.updateProduct({ product: { sku: "PAGE-1", title: "changed" }, updateMask: { paths: ["title"] } });
  const changed = await catalog.listProducts({ updatedSince: timestampFromDate(mark), pageSize: 1 });
  const next = await catalog.listProducts({ updatedSince: timestampFromDate(mark), pageSize: 1, pageToken: changed.nextPageToken });
  t.deepEqual(
    [...changed.products, ...next.products].map((p) => p.sku),
    ["PAGE-5", "PAGE-1"],
  );
  // A token only works with the filters that produced it.
  await rejection(t, catalog.listProducts({ pageSize: 1, pageToken: changed.nextPageToken }), Code.InvalidArgument);
  const drafts = await catalog.listProducts({ status: ProductStatus.DRAFT });
  t.deepEqual(
    drafts.products.map((p) => p.sku),
    ["MUG-1"],
  );
});

test.serial("batch get returns found products in request order and names the missing", async (t) => {
  const { products, missingSkus } = await catalog.batchGetProducts({ skus: ["PAGE-2", "NOPE", "MUG-1", "PAGE-2"] });
  t.deepEqual(
    products.map((p) => p.sku),
    ["PAGE-2", "MUG-1"],
  );
  t.deepEqual(missingSkus, ["NOPE"]);
});

test.serial("history pages newest first", async (t) => {
  await catalog.createProduct({ product: productInit("HIST-1", { stock: 0 }) });
  for (let i = 1; i <= 4; i++) await catalog.adjustStock({ sku: "HIST-1", delta: 1 });
  const first = await catalog.listProductHistory({ sku: "HIST-1", pageSize: 2 });
  const second = await catalog.listProductHistory({ sku: "HIST-1", pageSize: 2, pageToken: first.nextPageToken });
  const third = await catalog.listProductHistory({ sku: "HIST-1", pageSize: 2, pageToken: second.nextPageToken });
  t.deepEqual(
    [...first.changes, ...second.changes, ...third.changes].map((c) => c.version),
    [5n, 4n, 3n, 2n, 1n],
  );
  t.is(third.nextPageToken, "");
});

test.serial("Vitess readiness: every statement the catalog ran names one merchant", (t) => {
  t.true(api.queries.length > 50);
  const { unnamed, crossMerchant } = vitessOffenders(api);
  t.deepEqual(unnamed, []);
  t.deepEqual(crossMerchant, [], "one merchant per statement");
});
