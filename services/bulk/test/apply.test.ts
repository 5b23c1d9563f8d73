import test from "ava";
import { sql } from "kysely";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, jsonColumn, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { applyChunk, failChunk } from "../src/apply.ts";
import type { BulkDb } from "../src/store.ts";
import { CHUNK_FORMAT, type StagedItem } from "../src/domain.ts";
import { listItems } from "../src/items.ts";
import { findJob } from "../src/jobs.ts";
import { finishStaging, stageLines, type ParsedLine } from "../src/stage.ts";
import { bulkMigrations, type BulkJobRow } from "../src/store.ts";
import { csvJob } from "./csv-job.ts";

const url = testDatabaseUrl("bulk_apply");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 10 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const { merchantId } = await createMerchant(db, "Bulk merchant");
test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

async function* lines(items: (StagedItem | { invalid: string })[], firstLine = 2): AsyncIterable<ParsedLine> {
  let line = firstLine;
  for (const item of items) {
    yield "invalid" in item
      ? { line: line++, kind: "invalid", sku: item.invalid, errors: [{ field: "price", code: "BAD_NUMBER", message: "not a number" }] }
      : { line: line++, kind: "valid", item };
  }
}

/** runJob stages the items as one job and applies every chunk, as workers would. */
async function runJob(
  items: (StagedItem | { invalid: string })[],
  options: { policy?: BulkJobRow["conflict_policy"]; chunkSize?: number; beforeApply?: () => Promise<void> } = {},
) {
  const { jobId } = await csvJob(db, merchantId, "t.csv", { conflictPolicy: options.policy ?? "overwrite" });
  const ref = { merchantId, jobId };
  const staged = await stageLines(db, ref, lines(items), {
    chunkSize: options.chunkSize ?? 1000,
    stagedVersions: true,
    maxFormat: CHUNK_FORMAT,
  });
  await finishStaging(db, ref, staged, false);
  await options.beforeApply?.();
  for (let chunkNo = 0; chunkNo < staged.chunks; chunkNo++) await applyChunk(db, { ...ref, chunkNo });
  return { jobId, staged, job: (await findJob(db, merchantId, jobId))! };
}

const product = (sku: string, extra: Partial<StagedItem> = {}): StagedItem => ({
  sku,
  title: `Title ${sku}`,
  description: "desc",
  priceMinor: 1000,
  currency: "EUR",
  stock: 5,
  attributes: { color: "red" },
  ...extra,
});

async function count(table: string, where: Record<string, string> = {}) {
  let q = sql`SELECT COUNT(*) AS n FROM ${sql.table(table)} WHERE merchant_id = ${merchantId}`;
  for (const [k, v] of Object.entries(where)) q = sql`${q} AND ${sql.ref(k)} = ${v}`;
  const { rows } = await q.execute(db);
  return Number((rows[0] as { n: number }).n);
}

test.serial("2,500 lines in 3 chunks: valid items applied once each, invalid ones reported, redelivery is a no-op", async (t) => {
  const items = Array.from({ length: 2500 }, (_, i) => (i % 50 === 49 ? { invalid: `BAD-${i}` } : product(`A-${i}`)));
  const auditBefore = await count("product_changes");
  const { jobId, staged, job } = await runJob(items);
  t.deepEqual(staged, { total: 2500, valid: 2450, invalid: 50, chunks: 3 });
  t.is(job.state, "partially_succeeded");
  t.is(Number(job.applied_items), 2450);
  t.is(Number(job.invalid_items), 50);
  t.is(job.chunks_done, 3);
  t.is((await count("product_changes")) - auditBefore, 2450, "one audit entry per applied item");
  t.is(await count("product_changes", { source_ref: jobId }), 2450);
  // A chunk's events are batch rows (product.batch) carrying event_count events each.
  const { rows: created } = await sql<{ n: number | string }>`
    SELECT SUM(event_count) AS n FROM outbox_events
    WHERE merchant_id = ${merchantId} AND event_type IN ('product.created', 'product.batch')`.execute(db);
  t.is(Number(created[0]!.n), 2450);
  // A redelivered chunk (any of them) changes nothing.
  for (let chunkNo = 0; chunkNo < 3; chunkNo++) t.true((await applyChunk(db, { merchantId, jobId, chunkNo })).noop);
  t.is(await count("product_changes", { source_ref: jobId }), 2450);
  const again = (await findJob(db, merchantId, jobId))!;
  t.is(Number(again.applied_items), 2450);
});

test.serial("two workers racing on one chunk: exactly one applies it", async (t) => {
  const { jobId } = await csvJob(db, merchantId, "race.csv");
  const ref = { merchantId, jobId };
  await finishStaging(
    db,
    ref,
    await stageLines(db, ref, lines(Array.from({ length: 300 }, (_, i) => product(`RACE-${i}`))), {
      chunkSize: 1000,
      stagedVersions: true,
    }),
    false,
  );
  const results = await Promise.all([applyChunk(db, { ...ref, chunkNo: 0 }), applyChunk(db, { ...ref, chunkNo: 0 })]);
  t.deepEqual(results.map((r) => r.noop).sort(), [false, true]);
  t.is(await count("product_changes", { source_ref: jobId }), 300);
  t.is((await findJob(db, merchantId, jobId))!.state, "succeeded");
});

test.serial("re-applying the same file yields UNCHANGED for every item", async (t) => {
  const items = Array.from({ length: 120 }, (_, i) => product(`SAME-${i}`));
  await runJob(items);
  const { jobId, job } = await runJob(items);
  t.is(job.state, "succeeded");
  t.is(Number(job.unchanged_items), 120);
  t.is(Number(job.applied_items), 0);
  t.is(await count("product_changes", { source_ref: jobId }), 0);
});

test.serial("a file touches only the columns it names", async (t) => {
  await runJob([product("COLS-1", { description: "keep me", attributes: { color: "red", size: "L" } })]);
  const { job } = await runJob([{ sku: "COLS-1", priceMinor: 2500, currency: "EUR", attributes: { size: "" } }]);
  t.is(Number(job.applied_items), 1);
  const row = await db
    .selectFrom("products")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "COLS-1")
    .executeTakeFirstOrThrow();
  t.is(row.description, "keep me");
  t.is(row.title, "Title COLS-1");
  t.is(Number(row.price_minor), 2500);
  t.deepEqual(
    typeof row.attributes === "string" ? JSON.parse(row.attributes) : row.attributes,
    { color: "red" },
    "an empty attr cell removes the key",
  );
  t.is(Number(row.version), 2);
});

test.serial("an edit after staging: SKIP reports CONFLICT and keeps it, OVERWRITE applies the file's columns over it", async (t) => {
  await runJob([product("EDIT-1"), product("EDIT-2")]);
  const edit = async () => {
    await db
      .updateTable("products")
      .set((eb) => ({ title: "edited by a person", version: eb("version", "+", 1) }))
      .where("merchant_id", "=", merchantId)
      .where("sku", "in", ["EDIT-1", "EDIT-2"])
      .execute();
  };
  const skip = await runJob(
    [
      { sku: "EDIT-1", priceMinor: 1, currency: "EUR" },
      { sku: "EDIT-2", priceMinor: 1, currency: "EUR" },
    ],
    { policy: "skip", beforeApply: edit },
  );
  t.is(skip.job.state, "partially_succeeded");
  t.is(Number(skip.job.conflict_items), 2);
  const items = await db
    .selectFrom("bulk_job_items")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("job_id", "=", skip.jobId)
    .execute();
  t.deepEqual(
    items.map((i) => i.outcome),
    ["conflict", "conflict"],
  );
  const overwrite = await runJob([{ sku: "EDIT-1", priceMinor: 7, currency: "EUR" }], { policy: "overwrite", beforeApply: edit });
  t.is(Number(overwrite.job.applied_items), 1);
  const row = await db
    .selectFrom("products")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "EDIT-1")
    .executeTakeFirstOrThrow();
  t.is(row.title, "edited by a person", "columns the file does not name keep the edit");
  t.is(Number(row.price_minor), 7);
});

test.serial("a new SKU without title, price and currency is INVALID at apply time; the rest of the chunk applies", async (t) => {
  const { jobId, job } = await runJob([{ sku: "NEW-NO-TITLE", stock: 4 }, product("NEW-OK")]);
  t.is(Number(job.applied_items), 1);
  t.is(Number(job.invalid_items), 1);
  const bad = await db
    .selectFrom("bulk_job_items")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("job_id", "=", jobId)
    .where("sku", "=", "NEW-NO-TITLE")
    .executeTakeFirstOrThrow();
  t.is(bad.outcome, "invalid");
  t.regex(JSON.stringify(bad.errors), /MISSING_FOR_CREATE/);
});

test.serial("a poison chunk fails its items without blocking the job's other chunks", async (t) => {
  const { jobId } = await csvJob(db, merchantId, "p.csv");
  const ref = { merchantId, jobId };
  const staged = await stageLines(db, ref, lines(Array.from({ length: 30 }, (_, i) => product(`POISON-${i}`))), {
    chunkSize: 10,
    stagedVersions: true,
    maxFormat: CHUNK_FORMAT,
  });
  await finishStaging(db, ref, staged, false);
  await applyChunk(db, { ...ref, chunkNo: 0 });
  await failChunk(db, { ...ref, chunkNo: 1 }, "boom after 5 deliveries");
  await applyChunk(db, { ...ref, chunkNo: 2 });
  t.true((await applyChunk(db, { ...ref, chunkNo: 1 })).noop, "a failed chunk is never applied later");
  const job = (await findJob(db, merchantId, jobId))!;
  t.is(job.state, "partially_succeeded");
  t.deepEqual([Number(job.applied_items), Number(job.failed_items), job.chunks_done], [20, 10, 3]);
  const failed = await listItems(db, ref, ["failed"], 0, 100);
  t.deepEqual(
    failed.map((i) => [i.sku, jsonColumn<{ code: string }[]>(i.errors)[0]!.code]),
    Array.from({ length: 10 }, (_, i) => [`POISON-${i + 10}`, "CHUNK_FAILED"]),
  );
});

test.serial("request_id makes job creation idempotent", async (t) => {
  const first = await csvJob(db, merchantId, "x.csv", { requestId: "upload-1" });
  const again = await csvJob(db, merchantId, "x.csv", { requestId: "upload-1" });
  t.deepEqual(again, { jobId: first.jobId, existing: true });
});

test.serial("a job that ends writes one bulk_job.finished event in the transaction that ends it", async (t) => {
  const { jobId, job } = await runJob([product("FIN-1"), product("FIN-2"), { invalid: "FIN-3" }], { chunkSize: 1 });
  t.is(job.state, "partially_succeeded");
  const events = await db
    .selectFrom("outbox_events")
    .select(["event_type", "aggregate_version"])
    .where("merchant_id", "=", merchantId)
    .where("aggregate_type", "=", "bulk_job")
    .where("aggregate_id", "=", jobId)
    .execute();
  t.deepEqual(
    events.map((e) => e.event_type),
    ["bulk_job.finished"],
  );
  t.is(Number(events[0]!.aggregate_version), Number(job.version));
});
