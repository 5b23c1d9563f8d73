import test from "ava";
import { Code } from "@connectrpc/connect";
import { CatalogService, productInit, rejection, startCatalog } from "./helpers.ts";

const api = await startCatalog("catalog_isolation");
const a = api.client(CatalogService, api.merchantA);
const b = api.client(CatalogService, api.merchantB);
const { product: secret } = await a.createProduct({ product: productInit("SECRET-1", { stock: 5 }) });
test.after.always(() => api.close());

test.serial("merchant B gets NOT_FOUND for A's product, exactly as for a product that does not exist", async (t) => {
  const theirs = await rejection(t, b.getProduct({ sku: "SECRET-1" }), Code.NotFound);
  const none = await rejection(t, b.getProduct({ sku: "NO-SUCH-SKU" }), Code.NotFound);
  t.is(theirs.rawMessage.replace("SECRET-1", "X"), none.rawMessage.replace("NO-SUCH-SKU", "X"));
  await rejection(t, b.getProduct({ id: secret!.id }), Code.NotFound);
});

test.serial("merchant B cannot list, batch-read, update, adjust, delete or read the history of A's product", async (t) => {
  t.deepEqual((await b.listProducts({})).products, []);
  t.deepEqual((await b.batchGetProducts({ skus: ["SECRET-1"] })).missingSkus, ["SECRET-1"]);
  await rejection(t, b.updateProduct({ product: { sku: "SECRET-1", title: "pwned" }, updateMask: { paths: ["title"] } }), Code.NotFound);
  await rejection(
    t,
    b.updateProduct({ product: { sku: "SECRET-1", title: "pwned", etag: secret!.etag }, updateMask: { paths: ["title"] } }),
    Code.NotFound,
  );
  await rejection(t, b.adjustStock({ sku: "SECRET-1", delta: -5 }), Code.NotFound);
  await rejection(t, b.deleteProduct({ sku: "SECRET-1" }), Code.NotFound);
  await rejection(t, b.listProductHistory({ sku: "SECRET-1" }), Code.NotFound);
  const { product } = await a.getProduct({ sku: "SECRET-1" });
  t.deepEqual(product, secret, "A's product is untouched");
});

test.serial("both merchants can own the same SKU independently", async (t) => {
  const { product: mine } = await b.createProduct({ product: productInit("SECRET-1", { title: "B's own" }) });
  t.not(mine!.id, secret!.id);
  t.is((await a.getProduct({ sku: "SECRET-1" })).product!.title, secret!.title);
  t.is((await b.getProduct({ sku: "SECRET-1" })).product!.title, "B's own");
});
