import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { CatalogService, countRows, errorInfo, productInit, startCatalog } from "./helpers.ts";

const api = await startCatalog("catalog_concurrency");
test.after.always(() => api.close());
const catalog = api.client(CatalogService, api.merchantA);

test("50 concurrent updates with the same etag: exactly one wins, 49 get ABORTED with the current etag", async (t) => {
  const { product } = await catalog.createProduct({ product: productInit("RACE-1") });
  const etag = product!.etag;
  const results = await Promise.allSettled(
    Array.from({ length: 50 }, (_, i) =>
      catalog.updateProduct({
        product: { sku: "RACE-1", etag, title: `title from writer ${i}` },
        updateMask: { paths: ["title"] },
      }),
    ),
  );
  const won = results.filter((r) => r.status === "fulfilled");
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.is(won.length, 1);
  t.is(lost.length, 49);
  const winner = won[0]!.value.product!;
  t.is(winner.version, 2n);
  for (const e of lost) {
    t.is(e.code, Code.Aborted);
    t.is(errorInfo(e)?.reason, "ETAG_MISMATCH");
    t.is(errorInfo(e)?.metadata["current_etag"], winner.etag);
  }
  const { product: final } = await catalog.getProduct({ sku: "RACE-1" });
  t.is(final!.version, product!.version + 1n);
  t.is(final!.title, winner.title);
  const { changes } = await catalog.listProductHistory({ sku: "RACE-1" });
  t.deepEqual(
    changes.map((c) => c.version),
    [2n, 1n],
    "one audit entry for the update, one for the create",
  );
});

test("100 concurrent decrements never take stock below zero", async (t) => {
  await catalog.createProduct({ product: productInit("STOCK-60", { stock: 60 }) });
  const results = await Promise.allSettled(Array.from({ length: 100 }, () => catalog.adjustStock({ sku: "STOCK-60", delta: -1 })));
  const ok = results.filter((r) => r.status === "fulfilled").length;
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.is(ok, 60);
  t.is(refused.length, 40);
  for (const e of refused) {
    t.is(e.code, Code.FailedPrecondition);
    t.is(errorInfo(e)?.reason, "INSUFFICIENT_STOCK");
    t.is(errorInfo(e)?.metadata["available"], "0");
  }
  const { product } = await catalog.getProduct({ sku: "STOCK-60" });
  t.is(product!.stock, 0);
  t.is(product!.version, 61n);
});

test("100 concurrent mixed adjustments lose no update", async (t) => {
  await catalog.createProduct({ product: productInit("STOCK-MIX", { stock: 1000 }) });
  const deltas = Array.from({ length: 100 }, (_, i) => (i % 2 === 0 ? -7 : 5));
  await Promise.all(deltas.map((delta) => catalog.adjustStock({ sku: "STOCK-MIX", delta })));
  const { product } = await catalog.getProduct({ sku: "STOCK-MIX" });
  t.is(product!.stock, 1000 + deltas.reduce((a, b) => a + b, 0));
  t.is(product!.version, 101n);
  // Every adjustment left exactly one audit entry and one outbox event.
  const { changes } = await catalog.listProductHistory({ sku: "STOCK-MIX", pageSize: 1000 });
  t.is(changes.length, 101);
  t.true((await countRows(api, "outbox_events", api.merchantA.merchantId)) >= 101);
});
