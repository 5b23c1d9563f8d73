import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import test from "ava";
import { sql } from "kysely";
import { Code } from "@connectrpc/connect";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { bucketOf, bucketUpperMs, percentileMs, startCallRecorder } from "@stockroom/common/observe";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { bulkMigrations, createJob, type BulkJobRow } from "@stockroom/bulk";
import type { SlaReport } from "../sla/report.ts";
import type { StockroomTables } from "../tables.ts";

const root = path.resolve(import.meta.dirname, "..", "..");
const url = testDatabaseUrl("sla_report");
await ensureDatabase(url);
const db = createDatabase<StockroomTables>({ url, poolSize: 2 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations]);
test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

const EDIT = "stockroom.catalog.v1.CatalogService/UpdateProduct";
const ORDER = "stockroom.order.v1.OrderService/CreateOrder";

async function report(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(root, "tools", "sla-report.ts"), ...args], {
    env: { ...process.env, DATABASE_URL: url },
  });
  return stdout;
}

async function finishedJob(merchantId: string, items: number, seconds: number, state: BulkJobRow["state"] = "succeeded") {
  const { jobId } = await createJob(db, {
    merchantId,
    requestId: "",
    format: "csv",
    conflictPolicy: "overwrite",
    dryRun: false,
    fileName: "f.csv",
  });
  const ended = new Date(Date.now() - 60_000);
  await db
    .updateTable("bulk_jobs")
    .set({ state, total_items: items, created_at: new Date(ended.getTime() - seconds * 1000), ended_at: ended })
    .where("merchant_id", "=", merchantId)
    .where("job_id", "=", jobId)
    .execute();
}

test("latency buckets: a percentile read from them is never low and at most 19% high", (t) => {
  for (const ms of [0.05, 0.1, 0.37, 1, 4.2, 9.99, 10, 123.4, 5_000, 60_000]) {
    const upper = bucketUpperMs(bucketOf(ms));
    t.true(upper >= ms - 1e-9, `${ms} ms → bucket up to ${upper}`);
    if (ms > 0.1) t.true(upper <= ms * 1.19 + 1e-9, `${ms} ms → bucket up to ${upper}`);
  }
  const buckets = new Map<number, number>();
  for (let i = 1; i <= 100; i++) buckets.set(bucketOf(i), (buckets.get(bucketOf(i)) ?? 0) + 1);
  t.true(percentileMs(buckets, 0.5)! >= 50 && percentileMs(buckets, 0.5)! <= 50 * 1.19);
  t.true(percentileMs(buckets, 0.99)! >= 99 && percentileMs(buckets, 0.99)! <= 99 * 1.19);
  t.is(percentileMs(new Map(), 0.99), undefined);
});

test("the report shows each merchant's bulk throughput, latencies and error rates against its tier's SLOs", async (t) => {
  const plus = await createMerchant(db, "Plus merchant");
  const standard = await createMerchant(db, "Standard merchant");
  await db.updateTable("merchants").set({ tier: "plus" }).where("merchant_id", "=", plus.merchantId).execute();

  // The recorder writes cumulative per-minute rows: flushing twice replaces, never double counts.
  const recorder = startCallRecorder({ db, flushEveryMs: 0 });
  for (let i = 0; i < 49; i++) recorder.record(plus.merchantId, EDIT, 5, undefined);
  await recorder.flush();
  for (let i = 0; i < 49; i++) recorder.record(plus.merchantId, EDIT, 5, undefined);
  recorder.record(plus.merchantId, EDIT, 80, undefined);
  recorder.record(plus.merchantId, EDIT, 80, Code.InvalidArgument);
  for (let i = 0; i < 9; i++) recorder.record(plus.merchantId, ORDER, 20, undefined);
  recorder.record(plus.merchantId, ORDER, 20, Code.Internal);
  for (let i = 0; i < 100; i++) recorder.record(standard.merchantId, EDIT, 3, undefined);
  await recorder.stop();
  const rows = await db
    .selectFrom("rpc_call_minutes")
    .select(sql<number>`SUM(calls)`.as("calls"))
    .where("merchant_id", "=", plus.merchantId)
    .where("method", "=", EDIT)
    .executeTakeFirstOrThrow();
  t.is(Number(rows.calls), 100);

  await finishedJob(plus.merchantId, 20_000, 10);
  await finishedJob(plus.merchantId, 30_000, 10);
  await finishedJob(standard.merchantId, 1_000, 5);

  const json: SlaReport = JSON.parse(await report("--since", "1h", "--json"));
  const p = json.merchants.find((m) => m.merchantId === plus.merchantId)!;
  const s = json.merchants.find((m) => m.merchantId === standard.merchantId)!;
  t.is(p.tier, "plus");
  t.like(p.bulk, { jobs: 2, finished: 2, items: 50_000, itemsPerSecond: 2500, completionP50S: 10, completionP99S: 10 });
  t.like(p.calls["single_edit"], { calls: 100, clientErrors: 1, serverErrorRate: 0 });
  t.true(p.calls["single_edit"]!.p50Ms! >= 5 && p.calls["single_edit"]!.p50Ms! < 6);
  t.true(p.calls["single_edit"]!.p99Ms! >= 80 && p.calls["single_edit"]!.p99Ms! < 96);
  t.like(p.calls["order"], { calls: 10, serverErrorRate: 0.1 });
  t.deepEqual(
    p.breaches.map((b) => b.replace(/ [\d.]+ ms >/, " N ms >")),
    ["single_edit p99 N ms > 50 ms", "order server errors 10.00% > 0.10%"],
  );

  t.is(s.tier, "standard");
  t.like(s.bulk, { jobs: 1, items: 1000, itemsPerSecond: null, completionP99S: 5 }, "a 1,000-item job is judged by completion time only");
  t.like(s.calls["single_edit"], { calls: 100, serverErrorRate: 0 });
  t.like(s.calls["order"], { calls: 0, p99Ms: null });
  t.deepEqual(s.breaches, []);

  const table = await report("--since", "1h");
  t.log(table);
  t.regex(table, /2 merchants, 1 missed an SLO/);
  t.regex(table, new RegExp(`${plus.merchantId} Plus merchant\\s+plus\\s+2\\s+50000\\s+2500 .*MISSED: single_edit p99`));
  t.regex(table, new RegExp(`${standard.merchantId} Standard merchant\\s+standard .* met$`, "m"));

  const one: SlaReport = JSON.parse(await report("--since", "1h", "--merchant", standard.merchantId, "--json"));
  t.deepEqual(
    one.merchants.map((m) => m.merchantId),
    [standard.merchantId],
  );
  const empty: SlaReport = JSON.parse(await report("--since", "2d", "--until", "1d", "--json"));
  t.deepEqual(empty.merchants, []);
});
