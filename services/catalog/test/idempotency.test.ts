import test from "ava";
import { Code } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import { CreateProductResponseSchema, AdjustStockResponseSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { CatalogService, errorInfo, fieldViolations, productInit, rejection, startCatalog } from "./helpers.ts";

const api = await startCatalog("catalog_idempotency");
test.after.always(() => api.close());
const catalog = api.client(CatalogService, api.merchantA);

test("a replayed create returns the identical response and creates nothing new", async (t) => {
  const first = await catalog.createProduct({ product: productInit("IDEM-1"), requestId: "req-create-1" });
  const again = await catalog.createProduct({ product: productInit("IDEM-1"), requestId: "req-create-1" });
  t.deepEqual(toBinary(CreateProductResponseSchema, again), toBinary(CreateProductResponseSchema, first));
  const { changes } = await catalog.listProductHistory({ sku: "IDEM-1" });
  t.is(changes.length, 1);
});

test("a replayed stock adjustment is applied once, even when the retries race", async (t) => {
  await catalog.createProduct({ product: productInit("IDEM-2", { stock: 10 }) });
  const replies = await Promise.all(
    Array.from({ length: 10 }, () => catalog.adjustStock({ sku: "IDEM-2", delta: -3, requestId: "req-adjust-1" })),
  );
  const bytes = replies.map((r) => Buffer.from(toBinary(AdjustStockResponseSchema, r)).toString("base64"));
  t.is(new Set(bytes).size, 1, "every retry sees the first response");
  t.is(replies[0]!.product!.stock, 7);
  const { product } = await catalog.getProduct({ sku: "IDEM-2" });
  t.is(product!.stock, 7);
  t.is(product!.version, 2n);
});

test("the same request_id with different parameters is rejected with REQUEST_ID_MISMATCH", async (t) => {
  await catalog.createProduct({ product: productInit("IDEM-3", { stock: 10 }) });
  await catalog.adjustStock({ sku: "IDEM-3", delta: -1, requestId: "req-adjust-2" });
  const e = await rejection(t, catalog.adjustStock({ sku: "IDEM-3", delta: -2, requestId: "req-adjust-2" }), Code.InvalidArgument);
  t.is(errorInfo(e)?.reason, "REQUEST_ID_MISMATCH");
  t.deepEqual(fieldViolations(e), ["request_id"]);
  // Reusing a key on another method is a mismatch too.
  const e2 = await rejection(
    t,
    catalog.updateProduct({ product: { sku: "IDEM-3", title: "x" }, updateMask: { paths: ["title"] }, requestId: "req-adjust-2" }),
    Code.InvalidArgument,
  );
  t.is(errorInfo(e2)?.reason, "REQUEST_ID_MISMATCH");
  const { product } = await catalog.getProduct({ sku: "IDEM-3" });
  t.is(product!.stock, 9);
  t.is(product!.title, "Product IDEM-3");
});

test("a failed call does not burn its request_id: the retry runs", async (t) => {
  await catalog.createProduct({ product: productInit("IDEM-4", { stock: 1 }) });
  await rejection(t, catalog.adjustStock({ sku: "IDEM-4", delta: -5, requestId: "req-adjust-3" }), Code.FailedPrecondition);
  await catalog.adjustStock({ sku: "IDEM-4", delta: 10 });
  const { product } = await catalog.adjustStock({ sku: "IDEM-4", delta: -5, requestId: "req-adjust-3" });
  t.is(product!.stock, 6);
});

test("request ids are per merchant", async (t) => {
  const other = api.client(CatalogService, api.merchantB);
  await catalog.createProduct({ product: productInit("IDEM-5"), requestId: "shared-id" });
  const { product } = await other.createProduct({ product: productInit("IDEM-5"), requestId: "shared-id" });
  t.is(product!.sku, "IDEM-5");
});
