/**
 * Orders and bulk jobs write the same stock column. A bulk chunk sets stock
 * (it applies the file's value, it does not add to it) while orders take
 * from it; both lock the product row, so they serialize, and the audit trail
 * shows in which order. The chunk is applied the way a worker applies it
 * (applyChunk), without NATS in between.
 */
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { startTestApi, waitFor } from "@stockroom/common/testing";
import { jsonColumn } from "@stockroom/common/db";
import { catalogModule } from "@stockroom/catalog";
import {
  applyChunk,
  createJob,
  bulkModule,
  finishStaging,
  stageLines,
  type ParsedLine,
  type BulkJobRow,
  type BulkTables,
} from "@stockroom/bulk";
import { ordersModule } from "../src/module.ts";
import { createProduct, OrderService, stockOf } from "./helpers.ts";
import type { OrderTables } from "../src/store.ts";

const api = await startTestApi<OrderTables & BulkTables>("orders_bulk", (db) => [
  catalogModule(db),
  bulkModule(db),
  ordersModule(db, {
    rateLimit: { ratePerSec: 0, burst: 1 },
    bulkhead: { perMerchant: 0, total: 0, waitingPerSku: 0, waitMs: 0, queueMs: 0 },
  }),
]);
test.after.always(() => api.close());
const db = api.api.db;
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;

/** stageStockJob stages a one-line job setting sku's stock; apply() runs its only chunk as a worker would. */
async function stageStockJob(sku: string, stock: number, policy: BulkJobRow["conflict_policy"]) {
  const { jobId } = await createJob(db, {
    merchantId,
    requestId: "",
    format: "csv",
    conflictPolicy: policy,
    dryRun: false,
    fileName: "stock.csv",
  });
  const ref = { merchantId, jobId };
  async function* lines(): AsyncIterable<ParsedLine> {
    yield { line: 2, kind: "valid", item: { sku, stock } };
  }
  await finishStaging(db, ref, await stageLines(db, ref, lines(), { chunkSize: 1000, stagedVersions: policy === "skip" }), false);
  const outcome = async () =>
    await db
      .selectFrom("bulk_job_items")
      .select(["outcome", "errors"])
      .where("merchant_id", "=", merchantId)
      .where("job_id", "=", jobId)
      .executeTakeFirstOrThrow();
  return { jobId, apply: () => applyChunk(db, { ...ref, chunkNo: 0 }), outcome };
}

/** stockHistory is the SKU's audit trail in version order: who changed the stock, from what, to what. */
async function stockHistory(sku: string) {
  const rows = await db
    .selectFrom("product_changes")
    .select(["version", "source_kind", "before_state", "after_state"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .orderBy("version")
    .execute();
  const stock = (state: unknown) => (state === null ? undefined : jsonColumn<{ stock: number }>(state).stock);
  return rows.map((r) => ({
    version: Number(r.version),
    source: r.source_kind,
    before: stock(r.before_state),
    after: stock(r.after_state)!,
  }));
}

const buy = (sku: string, i: number) => orders.createOrder({ requestId: `${sku}-${i}`, lines: [{ sku, quantity: 1 }] });

test("OVERWRITE: a chunk setting stock while orders reserve it; last writer wins and stock is never negative", async (t) => {
  await createProduct(api, api.merchantA, "BF-1", 50);
  const job = await stageStockJob("BF-1", 30, "overwrite");
  const calls = Array.from({ length: 100 }, (_, i) => buy("BF-1", i));
  // Apply the chunk once some orders have committed, while the rest are still coming.
  const started = waitFor("the first reservations", async () => ((await stockOf(api, merchantId, "BF-1")).stock <= 45 ? true : undefined));
  const [chunk, results] = await Promise.all([started.then(job.apply), Promise.allSettled(calls)]);
  t.deepEqual(chunk.counts, { applied: 1, unchanged: 0, conflict: 0, invalid: 0 });
  t.is((await job.outcome()).outcome, "applied");
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected").map((r) => ConnectError.from(r.reason));
  t.true(
    refused.every((e) => e.code === Code.FailedPrecondition),
    refused.map((e) => e.message).join("; "),
  );
  const sold = results.length - refused.length;

  const history = await stockHistory("BF-1");
  // One unbroken chain: each change starts from the stock the previous one left, and none goes below zero.
  for (let i = 1; i < history.length; i++) t.is(history[i]!.before, history[i - 1]!.after, `version ${history[i]!.version}`);
  t.true(history.every((h) => h.after >= 0));
  const setAt = history.findIndex((h) => h.source === "bulk_job");
  t.is(history[setAt]!.after, 30, "the chunk wrote the file's stock over the reservations before it");
  const after = history.slice(setAt + 1);
  t.true(after.every((h) => h.source === "order" && h.after === h.before! - 1));
  t.is(history.filter((h) => h.source === "order").length, sold);
  t.deepEqual(await stockOf(api, merchantId, "BF-1"), { stock: 30 - after.length, version: history.at(-1)!.version });
  t.true(setAt - 1 >= 5, `${setAt - 1} orders before the chunk, ${after.length} after, ${refused.length} refused`);
});

test("SKIP: an order after staging makes the chunk a CONFLICT and the reservation stands", async (t) => {
  await createProduct(api, api.merchantA, "BF-2", 20);
  const job = await stageStockJob("BF-2", 5, "skip");
  await buy("BF-2", 1);
  t.deepEqual((await job.apply()).counts, { applied: 0, unchanged: 0, conflict: 1, invalid: 0 });
  const { outcome, errors } = await job.outcome();
  t.is(outcome, "conflict");
  t.regex(JSON.stringify(errors), /CHANGED_SINCE_STAGED/);
  t.is((await stockOf(api, merchantId, "BF-2")).stock, 19);

  // Staged after the order, the same file applies, and the next order takes from the new stock.
  const fresh = await stageStockJob("BF-2", 5, "skip");
  t.is((await fresh.apply()).counts.applied, 1);
  await buy("BF-2", 2);
  t.is((await stockOf(api, merchantId, "BF-2")).stock, 4);
});

test("stock is what is left to sell: set to zero under pending orders, it refuses new ones and a cancel adds back", async (t) => {
  await createProduct(api, api.merchantA, "BF-3", 10);
  const pending = [];
  for (let i = 0; i < 4; i++) pending.push((await buy("BF-3", i)).order!);
  await (await stageStockJob("BF-3", 0, "overwrite")).apply();
  const refused = await t.throwsAsync(buy("BF-3", 99));
  t.is(ConnectError.from(refused).code, Code.FailedPrecondition);
  t.is((await stockOf(api, merchantId, "BF-3")).stock, 0);
  await orders.cancelOrder({ orderId: pending[0]!.id });
  t.is((await stockOf(api, merchantId, "BF-3")).stock, 1);
});
