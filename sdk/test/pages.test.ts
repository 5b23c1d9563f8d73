import test from "ava";
import { BulkJobState, StockroomError, ValidationError } from "../src/index.ts";
import { startSdkHarness } from "./harness.ts";

// client.all's iterators, request ids on errors and aborts, against a live server.
const h = await startSdkHarness("pages");
test.after.always(() => h.close());

test("client.all walks every page: products, a SKU's history, changes, bulk jobs and their items", async (t) => {
  const c = h.client({ transport: "connect" });
  const file = h.csv(25, "PG");
  const job = await c.uploadBulkFile(file.path);
  t.is((await c.waitForBulkJob(job.id)).state, BulkJobState.SUCCEEDED);
  const sku = `${file.skuPrefix}000001`;
  await c.catalog.updateProduct({ product: { sku, title: "Renamed" }, updateMask: { paths: ["title"] } });
  await c.catalog.updateProduct({ product: { sku, title: "Renamed again" }, updateMask: { paths: ["title"] } });

  const skus: string[] = [];
  for await (const p of c.all.products({ pageSize: 4 })) if (p.sku.startsWith(file.skuPrefix)) skus.push(p.sku);
  t.is(skus.length, 25, "7 pages of 4");
  t.is(new Set(skus).size, 25, "no product twice");
  const history = await Array.fromAsync(c.all.productHistory({ sku, pageSize: 1 }));
  t.deepEqual(
    history.slice(0, 2).map((ch) => ch.after?.title),
    ["Renamed again", "Renamed"],
    "newest first, one page each",
  );
  t.true((await Array.fromAsync(c.all.changes({ pageSize: 7 }))).length >= 27);
  t.true((await Array.fromAsync(c.all.bulkJobs({ pageSize: 1 }))).some((j) => j.id === job.id));
  const lines = (await Array.fromAsync(c.all.bulkJobItems({ jobId: job.id, pageSize: 6 }))).map((i) => Number(i.lineNumber));
  t.deepEqual(
    lines,
    Array.from({ length: 25 }, (_, i) => i + 2),
    "every item once, in line order (line 1 is the header)",
  );
  // Leaving early fetches no further page.
  let pages = 0;
  const counting = h.client({ interceptors: [(next) => (req) => (pages++, next(req))] });
  for await (const _ of counting.all.products({ pageSize: 2 })) break;
  t.is(pages, 1);
});

test("a typed error carries the request_id of the call, the generated one included", async (t) => {
  const c = h.client();
  const sku = `RQ${h.suffix}`;
  await c.catalog.createProduct({
    product: { sku, title: "A", price: { currencyCode: "EUR", minorUnits: 100n } },
    requestId: `rq-${h.suffix}`,
  });
  const mine = await t.throwsAsync(
    c.catalog.createProduct({
      product: { sku, title: "B", price: { currencyCode: "EUR", minorUnits: 100n } },
      requestId: `rq-${h.suffix}`,
    }),
    { instanceOf: ValidationError },
  );
  t.is(mine?.reason, "REQUEST_ID_MISMATCH");
  t.is(mine?.requestId, `rq-${h.suffix}`);
  const generated = await t.throwsAsync(
    c.catalog.createProduct({ product: { sku, title: "C", price: { currencyCode: "EUR", minorUnits: 100n } } }),
    {
      instanceOf: StockroomError,
    },
  );
  t.regex(generated?.requestId ?? "", /^sdk-[0-9a-z]{26}$/);
  const read = await t.throwsAsync(c.catalog.getProduct({ sku: `none-${h.suffix}` }), { instanceOf: StockroomError });
  t.is(read?.requestId, undefined, "a read carries no request_id");
});

test("an abort rejects with the platform's AbortError (the signal's reason), for calls, iterators and helpers", async (t) => {
  for (const n of [1, 2]) {
    await h
      .client()
      .catalog.createProduct({ product: { sku: `AB${h.suffix}-${n}`, title: "A", price: { currencyCode: "EUR", minorUnits: 1n } } });
  }
  for (const transport of ["grpc", "connect"] as const) {
    const c = h.client({ transport });
    const controller = new AbortController();
    controller.abort();
    const unary = await t.throwsAsync(c.catalog.getProduct({ sku: "x" }, { signal: controller.signal }));
    t.true(unary instanceof DOMException && unary.name === "AbortError", `${transport}: ${unary}`);
    const list = await t.throwsAsync(Array.fromAsync(c.all.products({}, { signal: controller.signal })));
    t.is(list?.name, "AbortError");
    const upload = await t.throwsAsync(c.uploadBulkFile(h.csv(5, "AB").path, { signal: controller.signal }));
    t.is(upload?.name, "AbortError");
    // Aborted while the call runs, and with a reason of the caller's own.
    const running = new AbortController();
    const walking = (async () => {
      for await (const _ of c.all.products({ pageSize: 1 }, { signal: running.signal })) running.abort();
    })();
    t.is((await t.throwsAsync(walking))?.name, "AbortError");
    const timeout = await t.throwsAsync(c.catalog.getProduct({ sku: "x" }, { signal: AbortSignal.abort(new Error("mine")) }));
    t.is(timeout?.message, "mine");
  }
});
