/**
 * Read-your-writes: UpdateProduct with wait_for_search returns only once the
 * search projection holds the new version, within the call's deadline.
 */
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { catalogModule } from "@stockroom/catalog";
import { startTestApi } from "@stockroom/common/testing";
import { findPosition } from "../src/store.ts";
import { CatalogService, productInit, startSearchHarness, type SearchHarness } from "./harness.ts";

let h: SearchHarness;

test.before(async () => {
  h = await startSearchHarness("wait");
  await h.startRelay(); // the projector starts late, in the tests
});

test.after.always(async () => {
  await h?.close();
});

const titleUpdate = (sku: string, title: string) => ({ product: { sku, title }, updateMask: { paths: ["title"] } });

test.serial(
  "past the deadline the call fails with DEADLINE_EXCEEDED, the update stays, and a retry with its request_id waits again",
  async (t) => {
    const merchant = await h.newMerchant();
    const catalog = h.catalog(merchant);
    await catalog.createProduct({ product: productInit("SLOW") });
    const request = { ...titleUpdate("SLOW", "Waited for"), waitForSearch: true, requestId: "rename-slow" };

    const started = Date.now();
    const error = ConnectError.from(await t.throwsAsync(catalog.updateProduct(request, { timeoutMs: 400 })));
    t.is(error.code, Code.DeadlineExceeded);
    t.true(Date.now() - started >= 350, "it waited for the projection until the deadline");
    const { product } = await catalog.getProduct({ sku: "SLOW" });
    t.like(product, { title: "Waited for", version: 2n }, "the update is committed");

    await h.startProjector();
    const retried = await catalog.updateProduct(request);
    t.is(retried.product?.version, 2n, "the retry returns the first response, changing nothing");
    t.deepEqual(await findPosition(h.searchDb, merchant.merchantId, "SLOW"), { productId: product!.id, version: 2 });
  },
);

test.serial("the call returns only after search holds the version", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("FAST") });
  for (let i = 1; i <= 5; i++) {
    const { product } = await catalog.updateProduct({ ...titleUpdate("FAST", `Title ${i}`), waitForSearch: true });
    // No polling here: the projection must already have it.
    t.deepEqual(await findPosition(h.searchDb, merchant.merchantId, "FAST"), { productId: product!.id, version: i + 1 });
    const { results } = await h.search(merchant).searchProducts({ query: "title" });
    t.is(results[0]?.version, BigInt(i + 1));
  }
});

test("a server without a search projection refuses wait_for_search and changes nothing", async (t) => {
  const api = await startTestApi("search_nowait", (db) => [catalogModule(db)]);
  t.teardown(() => api.close());
  const catalog = api.client(CatalogService, api.merchantA);
  await catalog.createProduct({ product: productInit("ALONE") });
  const error = ConnectError.from(await t.throwsAsync(catalog.updateProduct({ ...titleUpdate("ALONE", "New"), waitForSearch: true })));
  t.is(error.code, Code.FailedPrecondition);
  t.is(error.findDetails(ErrorInfoSchema)[0]?.reason, "SEARCH_UNAVAILABLE");
  t.like((await catalog.getProduct({ sku: "ALONE" })).product, { version: 1n, title: "Product ALONE" });
});
