import { randomBytes } from "node:crypto";
import test from "ava";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { testDatabaseUrl, waitFor, dropTestDatabase } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import type { BulkDb } from "../src/store.ts";
import { CHUNK_FORMAT, type StagedItem } from "../src/domain.ts";
import { findJob } from "../src/jobs.ts";
import { DEFAULT_QUEUE, ensureChunkQueue, topUp, type QueueConfig } from "../src/queue.ts";
import { finishStaging, stageLines, type ParsedLine } from "../src/stage.ts";
import { bulkMigrations } from "../src/store.ts";
import { startBulkWorker, type BulkWorker } from "../src/worker.ts";
import { csvJob } from "./csv-job.ts";

// Real MariaDB and NATS; this file's own database, stream and subjects.
const url = testDatabaseUrl("bulk_pipeline");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 12 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const { merchantId } = await createMerchant(db, "Pipeline merchant");
const nats = await connectNats({ servers: "127.0.0.1:4222", name: "bulk-pipeline-test" });
const suffix = randomBytes(4).toString("hex");
const log = createLogger("bulk-test", (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent");
/** Every stream this file's tests create, deleted when they end (nothing is left in NATS). */
const streams = new Set<string>();
test.after.always(async () => {
  for (const name of streams) await nats.jsm.streams.delete(name).catch(() => false);
  await nats.close();
  await db.destroy();
  await dropTestDatabase(url);
});

/**
 * queueFor gives each test its own stream, so the tests' workers never meet.
 * The tests still share this file's database, and the reconciler is a sweep over
 * every queued chunk in it: run concurrently, one test's reconciler re-published
 * another test's chunks onto its own stream, where they were stranded once that
 * test ended (the "small job" test then waited forever). So the tests run serially.
 */
function queueFor(name: string, overrides: Partial<QueueConfig> = {}): QueueConfig {
  streams.add(overrides.stream ?? `BULK_T_${name}_${suffix}`);
  return {
    ...DEFAULT_QUEUE,
    stream: `BULK_T_${name}_${suffix}`,
    subjectPrefix: `t_${suffix}.${name}.chunk`,
    durable: "workers",
    // Under a loaded CI machine a chunk can take seconds: a 2 s ack wait made JetStream redeliver
    // chunks still being applied, piling deliveries onto the ledger lock.
    ackWaitMs: 10_000,
    maxDeliver: 3,
    window: 2,
    ...overrides,
  };
}

async function* lines(prefix: string, n: number, item: (i: number) => Partial<StagedItem> = () => ({})): AsyncIterable<ParsedLine> {
  for (let i = 0; i < n; i++) {
    yield {
      line: i + 2,
      kind: "valid",
      item: { sku: `${prefix}-${i}`, title: `T ${i}`, priceMinor: 100 + i, currency: "EUR", ...item(i) },
    };
  }
}

async function stagedJob(prefix: string, n: number, chunkSize: number, item?: (i: number) => Partial<StagedItem>) {
  const { jobId } = await csvJob(db, merchantId, `${prefix}.csv`);
  const staged = await stageLines(db, { merchantId, jobId }, lines(prefix, n, item), {
    chunkSize,
    stagedVersions: true,
    maxFormat: CHUNK_FORMAT,
  });
  await finishStaging(db, { merchantId, jobId }, staged, false);
  return jobId;
}

const ended = (jobId: string) => async () => {
  const job = await findJob(db, merchantId, jobId);
  return job && ["succeeded", "partially_succeeded", "failed", "cancelled"].includes(job.state) ? job : undefined;
};

async function auditRows(jobId: string): Promise<number> {
  const r = await db
    .selectFrom("product_changes")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("merchant_id", "=", merchantId)
    .where("source_ref", "=", jobId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

async function workers(q: QueueConfig, n: number, reconcileEveryMs = 0): Promise<BulkWorker[]> {
  return Promise.all(Array.from({ length: n }, () => startBulkWorker({ db, nats, queue: q, log, concurrency: 2, reconcileEveryMs })));
}

test.serial("two worker processes share the queue and apply every item exactly once", async (t) => {
  const q = queueFor("share", { reconcileAfterMs: 3000 });
  await ensureChunkQueue(nats.jsm, q);
  const jobId = await stagedJob("SHARE", 3000, 250);
  // As deployed: the workers' reconciler runs (MySQL is the source of truth for what is queued).
  const running = await workers(q, 2, 1000);
  t.teardown(() => Promise.all(running.map((w) => w.stop())));
  await topUp(db, nats, q, { merchantId, jobId });
  const job = await waitFor("the job to end", ended(jobId), 180_000);
  t.is(job.state, "succeeded");
  t.is(Number(job.applied_items), 3000);
  t.is(job.chunks_done, 12);
  t.is(await auditRows(jobId), 3000);
});

test.serial("chunks lost from the stream are re-published by the reconciler and still applied once", async (t) => {
  const q = queueFor("lost", { reconcileAfterMs: 300 });
  await ensureChunkQueue(nats.jsm, q);
  const jobId = await stagedJob("LOST", 1000, 100);
  await topUp(db, nats, q, { merchantId, jobId });
  await nats.jsm.streams.purge(q.stream); // nats-server lost them (no fsync, or a crash)
  const running = await workers(q, 1, 200);
  t.teardown(() => Promise.all(running.map((w) => w.stop())));
  const job = await waitFor("the job to end", ended(jobId), 180_000);
  t.is(job.state, "succeeded");
  t.is(Number(job.applied_items), 1000);
  t.is(await auditRows(jobId), 1000);
  const attempts = await db
    .selectFrom("bulk_job_chunks")
    .select("attempt")
    .where("merchant_id", "=", merchantId)
    .where("job_id", "=", jobId)
    .execute();
  t.true(
    attempts.some((c) => c.attempt > 0),
    "the lost chunks went out again under a new attempt id",
  );
});

test.serial("a small job is not starved by a large one", async (t) => {
  const q = queueFor("fair", { window: 2 });
  await ensureChunkQueue(nats.jsm, q);
  const big = await stagedJob("BIG", 3000, 50); // 60 chunks
  await topUp(db, nats, q, { merchantId, jobId: big });
  const small = await stagedJob("SMALL", 20, 50);
  await topUp(db, nats, q, { merchantId, jobId: small });
  const running = await workers(q, 1);
  t.teardown(() => Promise.all(running.map((w) => w.stop())));
  await waitFor("the small job to end", ended(small), 180_000);
  const bigNow = (await findJob(db, merchantId, big))!;
  t.true(bigNow.chunks_done < bigNow.chunk_count / 2, `the big job had done ${bigNow.chunks_done}/${bigNow.chunk_count} chunks`);
  await waitFor("the big job to end", ended(big), 180_000);
});

test.serial("a chunk that fails every delivery ends as FAILED items without blocking the job", async (t) => {
  const q = queueFor("poison", { maxDeliver: 2 });
  await ensureChunkQueue(nats.jsm, q);
  // Line 150's title is too long for the column: its chunk's transaction fails every time.
  const jobId = await stagedJob("POISON", 300, 100, (i) => (i === 150 ? { title: "x".repeat(600) } : {}));
  const running = await workers(q, 1);
  t.teardown(() => Promise.all(running.map((w) => w.stop())));
  await topUp(db, nats, q, { merchantId, jobId });
  const job = await waitFor("the job to end", ended(jobId), 180_000);
  t.is(job.state, "partially_succeeded");
  t.deepEqual([Number(job.applied_items), Number(job.failed_items)], [200, 100]);
  t.is(await auditRows(jobId), 200);
});
