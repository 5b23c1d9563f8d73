/**
 * The 2026-12 product fields in bulk files, and chunk formats: a chunk is
 * staged in the oldest format that holds its items, a worker applies only
 * formats it knows and passes newer ones to newer workers (never failing
 * them as poison), and staging can be held to format 1 during a roll.
 */
import { randomBytes } from "node:crypto";
import test from "ava";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, jsonColumn, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { testDatabaseUrl, waitFor, dropTestDatabase } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { applyChunk } from "../src/apply.ts";
import { CHUNK_FORMAT, ROW_FORMAT, type StagedItem } from "../src/domain.ts";
import { findJob } from "../src/jobs.ts";
import { parseBulkFile, type ParsedLine } from "../src/parse/index.ts";
import { DEFAULT_QUEUE, ensureChunkQueue, topUp, type QueueConfig } from "../src/queue.ts";
import { finishStaging, stageLines } from "../src/stage.ts";
import { bulkMigrations, type BulkDb } from "../src/store.ts";
import { startBulkWorker } from "../src/worker.ts";
import { csvJob } from "./csv-job.ts";

const url = testDatabaseUrl("bulk_formats");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 10 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const { merchantId } = await createMerchant(db, "Formats merchant");
const nats = await connectNats({ servers: "127.0.0.1:4222", name: "bulk-formats-test" });
const suffix = randomBytes(4).toString("hex");
const log = createLogger("bulk-formats-test", "silent");
const streams: string[] = [];
test.after.always(async () => {
  for (const name of streams) await nats.jsm.streams.delete(name).catch(() => false);
  await nats.close();
  await db.destroy();
  await dropTestDatabase(url);
});

async function parse(text: string, format: "csv" | "jsonl" = "csv"): Promise<ParsedLine[]> {
  const out: ParsedLine[] = [];
  async function* source() {
    yield new Uint8Array(Buffer.from(text, "utf8"));
  }
  for await (const line of parseBulkFile(source(), { format, maxBytes: 1e7, maxItems: 1e6 })) out.push(line);
  return out;
}

const errorsOf = (lines: ParsedLine[]) => lines.map((l) => (l.kind === "invalid" ? l.errors.map((e) => `${e.field}:${e.code}`) : []));

test("CSV: gtin, brand, compare_at_price and weight_grams columns; an empty cell clears; bad values are per-line errors", async (t) => {
  const lines = await parse(
    [
      "sku,price,currency,compare_at_price,gtin,brand,weight_grams",
      "A,9.99,EUR,12.50,4006381333931,Stabilo,120",
      "B,9.99,EUR,,,,",
      "C,9.99,EUR,x,4006381333932,Ac\tme,-3",
      "D,5,JPY,7.5,96385074,Acme,99999999999",
    ].join("\n"),
  );
  t.deepEqual(lines[0], {
    line: 2,
    kind: "valid",
    item: { sku: "A", priceMinor: 999, currency: "EUR", compareAtMinor: 1250, gtin: "4006381333931", brand: "Stabilo", weightGrams: 120 },
  });
  t.deepEqual(lines[1], {
    line: 3,
    kind: "valid",
    item: { sku: "B", priceMinor: 999, currency: "EUR", compareAtMinor: null, gtin: "", brand: "", weightGrams: null },
  });
  t.deepEqual(errorsOf(lines).slice(2), [
    ["compare_at_price:BAD_NUMBER", "weight_grams:NEGATIVE_NUMBER", "gtin:BAD_GTIN", "brand:BAD_BRAND"],
    ["compare_at_price:BAD_NUMBER", "weight_grams:TOO_LARGE"],
  ]);
  const headerless = await t.throwsAsync(parse("sku,compare_at_price\nA,1\n"));
  t.regex(headerless!.message, /compare_at_price column needs the price and currency columns/);
});

test("JSON Lines: the new keys, null clears, wrong types are item errors", async (t) => {
  const lines = await parse(
    [
      `{"sku":"A","brand":"Acme","gtin":"96385074","weight_grams":5,"price":1,"currency":"EUR","compare_at_price":1.5}`,
      `{"sku":"B","compare_at_price":null,"weight_grams":null,"brand":""}`,
      `{"sku":"C","brand":7,"weight_grams":true}`,
    ].join("\n"),
    "jsonl",
  );
  t.deepEqual(lines[0]!.kind === "valid" && lines[0]!.item, {
    sku: "A",
    brand: "Acme",
    gtin: "96385074",
    weightGrams: 5,
    priceMinor: 100,
    currency: "EUR",
    compareAtMinor: 150,
  });
  t.deepEqual(lines[1]!.kind === "valid" && lines[1]!.item, { sku: "B", compareAtMinor: null, weightGrams: null, brand: "" });
  t.deepEqual(errorsOf(lines)[2], ["brand:MALFORMED_LINE", "weight_grams:MALFORMED_LINE"]);
});

const item = (sku: string, extra: Partial<StagedItem> = {}): StagedItem => ({
  sku,
  title: `T ${sku}`,
  priceMinor: 100,
  currency: "EUR",
  ...extra,
});

async function* valid(items: StagedItem[]): AsyncIterable<ParsedLine> {
  let line = 2;
  for (const i of items) yield { line: line++, kind: "valid", item: i };
}

async function stage(items: StagedItem[], chunkSize: number, maxFormat?: number) {
  const { jobId } = await csvJob(db, merchantId, "f.csv");
  const ref = { merchantId, jobId };
  const staged = await stageLines(db, ref, valid(items), { chunkSize, stagedVersions: false, maxFormat });
  await finishStaging(db, ref, staged, false);
  const chunks = await db
    .selectFrom("bulk_job_chunks")
    .select(["chunk_no", "format"])
    .where("job_id", "=", jobId)
    .orderBy("chunk_no")
    .execute();
  return { jobId, ref, staged, formats: chunks.map((c) => c.format) };
}

test("a chunk is staged in the oldest format that holds its items; a worker of format 1 leaves a format-2 chunk untouched", async (t) => {
  const { ref, formats } = await stage([item("F1-a"), item("F1-b"), item("F2-a", { brand: "Acme" }), item("F2-b")], 2);
  t.deepEqual(formats, [1, 2]);
  const old = await applyChunk(db, { ...ref, chunkNo: 1 }, new Date(), 1);
  t.deepEqual(old, { noop: true, counts: { applied: 0, unchanged: 0, conflict: 0, invalid: 0 }, newerFormat: 2 });
  t.is(await db.selectFrom("products").select("sku").where("sku", "=", "F2-a").executeTakeFirst(), undefined);
  t.is((await applyChunk(db, { ...ref, chunkNo: 0 }, new Date(), 1)).counts.applied, 2, "format 1 is applied by a format-1 worker");
  t.is((await applyChunk(db, { ...ref, chunkNo: 1 })).counts.applied, 2);
  const row = await db
    .selectFrom("products")
    .select(["brand"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "F2-a")
    .executeTakeFirstOrThrow();
  t.is(row.brand, "Acme");
});

test("BULK_CHUNK_FORMAT=1: lines that name a new field are FIELD_NOT_ENABLED, the rest are staged in format 1", async (t) => {
  const { jobId, staged, formats } = await stage([item("G-a"), item("G-b", { gtin: "96385074", weightGrams: 3 })], 10, 1);
  t.deepEqual([staged.valid, staged.invalid], [1, 1]);
  t.deepEqual(formats, [1]);
  const bad = await db
    .selectFrom("bulk_job_items")
    .select(["sku", "errors"])
    .where("job_id", "=", jobId)
    .where("outcome", "=", "invalid")
    .execute();
  t.deepEqual(
    bad.map((b) => [b.sku, jsonColumn<{ field: string; code: string }[]>(b.errors).map((e) => `${e.field}:${e.code}`)]),
    [["G-b", ["gtin:FIELD_NOT_ENABLED", "weight_grams:FIELD_NOT_ENABLED"]]],
  );
});

test("the new fields merge like the others: an item that changes none is UNCHANGED, a kept compare-at price needs its currency", async (t) => {
  await stage([item("H-1", { brand: "Acme", compareAtMinor: 150 })], 10).then(({ ref }) => applyChunk(db, { ...ref, chunkNo: 0 }));
  const same = await stage([item("H-1", { brand: "Acme" })], 10);
  t.deepEqual((await applyChunk(db, { ...same.ref, chunkNo: 0 })).counts, { applied: 0, unchanged: 1, conflict: 0, invalid: 0 });
  const repriced = await stage([item("H-1", { currency: "USD" })], 10);
  t.deepEqual((await applyChunk(db, { ...repriced.ref, chunkNo: 0 })).counts, { applied: 0, unchanged: 0, conflict: 0, invalid: 1 });
  const cleared = await stage([item("H-1", { currency: "USD", compareAtMinor: null, weightGrams: 0 })], 10);
  t.deepEqual((await applyChunk(db, { ...cleared.ref, chunkNo: 0 })).counts, { applied: 1, unchanged: 0, conflict: 0, invalid: 0 });
  const row = await db
    .selectFrom("products")
    .select(["brand", "compare_at_minor", "weight_grams", "currency"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "H-1")
    .executeTakeFirstOrThrow();
  t.deepEqual(row, { brand: "Acme", compare_at_minor: null, weight_grams: 0, currency: "USD" });
});

/** succeeded waits for a job to succeed and returns it. */
const succeeded = (jobId: string) =>
  waitFor(
    "the job to end",
    async () => {
      const j = await findJob(db, merchantId, jobId);
      return j?.state === "succeeded" ? j : undefined;
    },
    60_000,
  );

function queueFor(name: string): QueueConfig {
  const q = {
    ...DEFAULT_QUEUE,
    stream: `BULK_FMT_${name}_${suffix}`,
    subjectPrefix: `t_${suffix}.fmt_${name}.chunk`,
    durable: "workers",
    ackWaitMs: 10_000,
    maxDeliver: 3,
    window: 4,
  };
  streams.push(q.stream);
  return q;
}

test.serial(
  "an old-format worker and a new one share a queue: only the new one applies format-2 chunks, and none is failed as poison",
  async (t) => {
    const q = queueFor("mixed");
    await ensureChunkQueue(nats.jsm, q);
    // Chunks of 5: 0 and 2 are format 1, 1 and 3 format 2.
    const items = Array.from({ length: 20 }, (_, i) => item(`MIX-${i}`, Math.floor(i / 5) % 2 === 1 ? { brand: `B${i}` } : {}));
    const { ref, formats } = await stage(items, 5);
    t.deepEqual(formats, [1, 2, 1, 2]);
    const old = await startBulkWorker({ db, nats, queue: q, log, concurrency: 2, reconcileEveryMs: 0, maxFormat: 1 });
    t.teardown(() => old.stop());
    await topUp(db, nats, q, ref);
    const chunkStates = async () =>
      (
        await db.selectFrom("bulk_job_chunks").select(["state", "attempt"]).where("job_id", "=", ref.jobId).orderBy("chunk_no").execute()
      ).map((c) => c.state);
    await waitFor("the format-1 chunks", async () => (await chunkStates()).join() === "applied,queued,applied,queued" || undefined, 30_000);
    // Past max_deliver (3) of passes, the old worker hands the chunks back under a new attempt instead of failing them.
    await waitFor(
      "a hand-back",
      async () => {
        const rows = await db
          .selectFrom("bulk_job_chunks")
          .select("attempt")
          .where("job_id", "=", ref.jobId)
          .where("format", "=", 2)
          .execute();
        return rows.every((r) => r.attempt >= 1) || undefined;
      },
      30_000,
    );
    t.deepEqual(await chunkStates(), ["applied", "queued", "applied", "queued"], "the old worker applied no format-2 chunk");
    const newer = await startBulkWorker({ db, nats, queue: q, log, concurrency: 2, reconcileEveryMs: 0 });
    t.teardown(() => newer.stop());
    const job = await succeeded(ref.jobId);
    t.is(Number(job.applied_items), 20);
    t.is(Number(job.failed_items), 0);
    const brands = await db
      .selectFrom("products")
      .select(["sku", "brand"])
      .where("merchant_id", "=", merchantId)
      .where("sku", "like", "MIX-%")
      .execute();
    t.is(brands.length, 20);
    t.is(brands.filter((b) => b.brand !== null).length, 10, "every format-2 item kept its brand");
  },
);

test.serial(
  "format 3 (compact): a worker of format 2 passes its chunks on without applying one, a format-3 worker applies them once",
  async (t) => {
    const q = queueFor("compact");
    await ensureChunkQueue(nats.jsm, q);
    const items = Array.from({ length: 20 }, (_, i) => item(`CMP-${i}`, i % 2 === 0 ? { brand: `B${i}` } : {}));
    const { ref, formats } = await stage(items, 5, CHUNK_FORMAT);
    t.deepEqual(formats, [3, 3, 3, 3]);
    const staged = await db
      .selectFrom("bulk_job_items")
      .select((eb) => eb.fn.countAll<number>().as("n"))
      .where("job_id", "=", ref.jobId)
      .executeTakeFirstOrThrow();
    t.is(Number(staged.n), 0, "the lines are in the ledger rows, not a row each");
    const old = await startBulkWorker({ db, nats, queue: q, log, concurrency: 2, reconcileEveryMs: 0, maxFormat: ROW_FORMAT });
    t.teardown(() => old.stop());
    await topUp(db, nats, q, ref);
    await waitFor(
      "hand-backs",
      async () => {
        const rows = await db.selectFrom("bulk_job_chunks").select(["attempt", "state"]).where("job_id", "=", ref.jobId).execute();
        return rows.every((r) => r.attempt >= 1 && r.state === "queued") || undefined;
      },
      30_000,
    );
    t.is(await db.selectFrom("products").select("sku").where("sku", "like", "CMP-%").executeTakeFirst(), undefined);
    const newer = await startBulkWorker({ db, nats, queue: q, log, concurrency: 2, reconcileEveryMs: 0 });
    t.teardown(() => newer.stop());
    const job = await succeeded(ref.jobId);
    t.deepEqual([Number(job.applied_items), Number(job.failed_items)], [20, 0]);
    const brands = await db
      .selectFrom("products")
      .select(["sku", "brand", "version"])
      .where("merchant_id", "=", merchantId)
      .where("sku", "like", "CMP-%")
      .execute();
    t.is(brands.length, 20);
    t.true(brands.every((b) => Number(b.version) === 1));
    t.is(brands.filter((b) => b.brand !== null).length, 10, "format 3 holds the format-2 fields");
  },
);
