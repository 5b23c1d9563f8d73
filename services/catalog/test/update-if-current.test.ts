/**
 * A conditional UpdateProduct's one-round-trip path (rpc.ts updateIfCurrent)
 * starts from the state the server last saw of a product, which the call's
 * etag names, without reading it. When another writer has changed the row
 * since (a bulk job, an order, another replica: here the product-write port
 * used directly), the stale write must commit nothing, and the call must
 * answer exactly as the locking path does.
 */
import test from "ava";
import { Code } from "@connectrpc/connect";
import { inTransaction } from "@stockroom/common/db";
import { newUlid } from "@stockroom/common";
import { NO_MERCHANDISING } from "../src/domain.ts";
import { lockProducts, writeProducts, type ProductWrite } from "../src/product-writes.ts";
import type { Product } from "../src/domain.ts";
import { CatalogService, errorInfo, productInit, rejection, startCatalog } from "./helpers.ts";

const api = await startCatalog("catalog_update_if_current");
test.after.always(() => api.close());
const catalog = api.client(CatalogService, api.merchantA);
const merchantId = api.merchantA.merchantId;

/** elsewhere changes a product through the product-write port, as a writer other than this server would. */
async function elsewhere(sku: string, write: (before: Product | undefined) => ProductWrite[]): Promise<Product[]> {
  return inTransaction(api.api.db, async (trx) => {
    const before = (await lockProducts(trx, merchantId, [sku])).get(sku);
    return writeProducts(trx, { merchantId, actor: "elsewhere", sourceKind: "bulk_job", sourceRef: newUlid() }, write(before));
  });
}

/** trail is what the database holds of a SKU's changes: audit versions (newest first) and outbox events. */
async function trail(sku: string): Promise<{ versions: bigint[]; events: number }> {
  const { changes } = await catalog.listProductHistory({ sku });
  const events = await api.api.db
    .selectFrom("outbox_events" as never)
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("merchant_id" as never, "=", merchantId as never)
    .where("aggregate_id" as never, "in", changes.map((c) => c.productId) as never)
    .executeTakeFirstOrThrow();
  return { versions: changes.map((c) => c.version), events: Number((events as { n: number }).n) };
}

/** fromKnownState reads the server's count of one-round-trip updates by outcome. */
async function fromKnownState(): Promise<{ applied: number; stale: number }> {
  const metric = await api.api.metrics.registry.getSingleMetric("stockroom_catalog_updates_from_known_state_total")!.get();
  const of = (outcome: string) => metric.values.find((v) => v.labels["outcome"] === outcome)?.value ?? 0;
  return { applied: of("applied"), stale: of("stale") };
}

// Serial (ava runs these before the others): the counts move by this test's calls alone.
test.serial("the server counts its one-round-trip updates: applied, and stale", async (t) => {
  const before = await fromKnownState();
  const { product } = await catalog.createProduct({ product: productInit("STALE-0") });
  const { product: renamed } = await catalog.updateProduct({
    product: { sku: "STALE-0", etag: product!.etag, title: "Renamed" },
    updateMask: { paths: ["title"] },
  });
  await elsewhere("STALE-0", (current) => [{ kind: "stock", before: current!, delta: 1 }]);
  await rejection(
    t,
    catalog.updateProduct({ product: { sku: "STALE-0", etag: renamed!.etag, title: "Late" }, updateMask: { paths: ["title"] } }),
    Code.Aborted,
  );
  // Without an etag the locking path answers, whatever the server saw: not counted.
  await catalog.updateProduct({ product: { sku: "STALE-0", title: "No etag" }, updateMask: { paths: ["title"] } });
  const after = await fromKnownState();
  t.deepEqual({ applied: after.applied - before.applied, stale: after.stale - before.stale }, { applied: 1, stale: 1 });
});

test("another writer changed the product after the caller read it: ABORTED with the current etag, and nothing of the attempt", async (t) => {
  const { product } = await catalog.createProduct({ product: productInit("STALE-1") });
  // The server has seen version 1 (it created it); a bulk job then changes the price.
  const [moved] = await elsewhere("STALE-1", (before) => [
    { kind: "update", before: before!, fields: { ...before!, priceMinor: 4242 }, changedFields: ["price"] },
  ]);
  const error = await rejection(
    t,
    catalog.updateProduct({ product: { sku: "STALE-1", etag: product!.etag, title: "Renamed" }, updateMask: { paths: ["title"] } }),
    Code.Aborted,
  );
  t.is(errorInfo(error)?.metadata["current_etag"], `${moved!.id}.${moved!.version}`);
  t.deepEqual(await trail("STALE-1"), { versions: [2n, 1n], events: 2 }, "the create and the bulk job's change, nothing else");
  const { product: now } = await catalog.getProduct({ sku: "STALE-1" });
  t.like(now, { title: product!.title, version: 2n, price: { minorUnits: 4242n } });
});

test("without an etag, the update lands on the state the row has, keeping another writer's change, once", async (t) => {
  await catalog.createProduct({ product: productInit("STALE-6") });
  await elsewhere("STALE-6", (before) => [
    { kind: "update", before: before!, fields: { ...before!, priceMinor: 4242 }, changedFields: ["price"] },
  ]);
  const { product } = await catalog.updateProduct({ product: { sku: "STALE-6", title: "Renamed" }, updateMask: { paths: ["title"] } });
  t.like(product, { version: 3n, title: "Renamed", price: { minorUnits: 4242n } });
  t.deepEqual(await trail("STALE-6"), { versions: [3n, 2n, 1n], events: 3 });
});

test("the product was deleted elsewhere: NOT_FOUND, and the attempt left no audit entry or event", async (t) => {
  const { product } = await catalog.createProduct({ product: productInit("STALE-2") });
  await elsewhere("STALE-2", (before) => [{ kind: "delete", before: before! }]);
  await rejection(
    t,
    catalog.updateProduct({ product: { sku: "STALE-2", etag: product!.etag, title: "Ghost" }, updateMask: { paths: ["title"] } }),
    Code.NotFound,
  );
  t.deepEqual(await trail("STALE-2"), { versions: [2n, 1n], events: 2 }, "the create and the delete, nothing else");
});

test("deleted and made again under the same SKU, up to the same version: ABORTED, and the new product untouched", async (t) => {
  await catalog.createProduct({ product: productInit("STALE-3", { title: "Old" }) });
  await elsewhere("STALE-3", (before) => [
    { kind: "update", before: before!, fields: { ...before!, description: "old one" }, changedFields: ["description"] },
  ]);
  // The server's last state of the SKU, and the caller's etag: the old product at version 2.
  const { product: old } = await catalog.getProduct({ sku: "STALE-3" });
  await elsewhere("STALE-3", (before) => [{ kind: "delete", before: before! }]);
  const fresh = {
    id: newUlid(),
    sku: "STALE-3",
    title: "New",
    description: "new one",
    priceMinor: 700,
    currency: "EUR",
    stock: 3,
    status: "active" as const,
    attributes: { size: "L" },
    ...NO_MERCHANDISING,
  };
  await elsewhere("STALE-3", () => [{ kind: "create", product: fresh }]);
  const [now] = await elsewhere("STALE-3", (before) => [
    { kind: "update", before: before!, fields: { ...before!, stock: 4 }, changedFields: ["stock"] },
  ]);
  t.is(now!.version, Number(old!.version));
  const error = await rejection(
    t,
    catalog.updateProduct({
      product: { sku: "STALE-3", etag: old!.etag, price: { currencyCode: "EUR", minorUnits: 900n } },
      updateMask: { paths: ["price"] },
    }),
    Code.Aborted,
  );
  t.is(errorInfo(error)?.metadata["current_etag"], `${fresh.id}.2`);
  const { product } = await catalog.getProduct({ sku: "STALE-3" });
  t.like(product, { id: fresh.id, version: 2n, title: "New", description: "new one", stock: 4, price: { minorUnits: 700n } });
});

test("a retried request_id on the one-round-trip path answers from its key and changes nothing more", async (t) => {
  const { product } = await catalog.createProduct({ product: productInit("STALE-5") });
  const request = {
    requestId: "stale-5-retry",
    product: { sku: "STALE-5", etag: product!.etag, title: "Once" },
    updateMask: { paths: ["title"] },
  };
  const first = await catalog.updateProduct(request);
  const again = await catalog.updateProduct(request);
  t.is(again.product!.etag, first.product!.etag);
  t.deepEqual(await trail("STALE-5"), { versions: [2n, 1n], events: 2 });
  // And the next update still starts from the committed state.
  const { product: next } = await catalog.updateProduct({
    product: { sku: "STALE-5", etag: first.product!.etag, title: "Twice" },
    updateMask: { paths: ["title"] },
  });
  t.is(next!.version, 3n);
});
