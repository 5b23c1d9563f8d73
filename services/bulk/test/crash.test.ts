import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import test from "ava";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { testDatabaseUrl, waitFor, dropTestDatabase, startNatsServer } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { BulkFileFormat, BulkJobState } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { BulkDb } from "../src/store.ts";
import { parseBulkConfig } from "../src/config.ts";
import { findJob } from "../src/jobs.ts";
import { ensureChunkQueue, topUp } from "../src/queue.ts";
import { bulkMigrations } from "../src/store.ts";
import { stagedJob as stageJob, startBulkHarness } from "./harness.ts";

// Crashes: worker processes killed with SIGKILL, and nats-server itself
// killed and restarted mid-job. This file runs its own nats-server on a free
// port with its own store, so the restart never disturbs other test files.
const workerMain = path.join(import.meta.dirname, "..", "src", "worker-main.ts");
const url = testDatabaseUrl("bulk_crash");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 8 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const { merchantId } = await createMerchant(db, "Crash merchant");
const natsServer = await startNatsServer("bulk-crash");
const env = {
  DATABASE_URL: url,
  NATS_URL: natsServer.url,
  LOG_LEVEL: process.env["TEST_LOG_LEVEL"] ?? "silent",
  BULK_ACK_WAIT_MS: "2000",
  BULK_MAX_DELIVER: "20",
  BULK_RECONCILE_EVERY_MS: "300",
  BULK_RECONCILE_AFTER_MS: "1500",
  BULK_WORKER_CONCURRENCY: "2",
  BULK_JOB_WINDOW: "6",
  DB_POOL_SIZE: "6",
};
const queue = parseBulkConfig(env).queue;
const workers = new Set<ChildProcess>();
const nats: NatsClient = await connectNats({ servers: env.NATS_URL, name: "crash-test" });
await ensureChunkQueue(nats.jsm, queue);
test.after.always(async () => {
  for (const w of workers) w.kill("SIGKILL");
  await nats.close().catch(() => {});
  natsServer.close();
  await db.destroy();
  await dropTestDatabase(url);
});

function startWorker(): ChildProcess {
  const child = spawn(process.execPath, [workerMain], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] });
  workers.add(child);
  child.once("exit", () => workers.delete(child));
  return child;
}

const stagedJob = (prefix: string, n: number, chunkSize: number) => stageJob(db, merchantId, prefix, n, chunkSize);

/** exactlyOnce checks that every item of the job left one audit entry and version 1. */
async function assertExactlyOnce(t: import("ava").ExecutionContext, jobId: string, prefix: string, n: number) {
  const job = await waitFor(
    "the job to end",
    async () => {
      const j = await findJob(db, merchantId, jobId);
      return j && ["succeeded", "partially_succeeded", "failed"].includes(j.state) ? j : undefined;
    },
    90_000,
  );
  t.is(job.state, "succeeded");
  t.is(Number(job.applied_items), n);
  // Only the SKUs with other than one entry are read back: vttablet refuses results of over 10,000 rows.
  const { skus } = await db
    .selectFrom("product_changes")
    .select((eb) => eb.fn.count<number>("sku").distinct().as("skus"))
    .where("merchant_id", "=", merchantId)
    .where("source_ref", "=", jobId)
    .executeTakeFirstOrThrow();
  t.is(Number(skus), n, "every item has an audit entry");
  const audit = await db
    .selectFrom("product_changes")
    .select(["sku"])
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("merchant_id", "=", merchantId)
    .where("source_ref", "=", jobId)
    .groupBy("sku")
    .having((eb) => eb.fn.countAll(), "!=", 1)
    .execute();
  t.deepEqual(
    audit.filter((a) => Number(a.n) !== 1),
    [],
    "no item was applied twice",
  );
  const { products, versionOne } = await db
    .selectFrom("products")
    .select((eb) => [
      eb.fn.countAll<number>().as("products"),
      eb.fn.sum<number>(eb.case().when("version", "=", 1).then(1).else(0).end()).as("versionOne"),
    ])
    .where("merchant_id", "=", merchantId)
    .where("sku", "like", `${prefix}-%`)
    .executeTakeFirstOrThrow();
  t.is(Number(products), n);
  t.is(Number(versionOne), n, "every product written once (version 1)");
}

test.serial("a worker killed with SIGKILL mid-job: the job still completes, every item applied exactly once", async (t) => {
  const jobId = await stagedJob("KILL", 12_000, 200);
  const doomed = startWorker();
  startWorker();
  await topUp(db, nats, queue, { merchantId, jobId });
  await waitFor(
    "some chunks to be applied",
    async () => ((await findJob(db, merchantId, jobId))!.chunks_done >= 8 ? true : undefined),
    90_000,
  );
  doomed.kill("SIGKILL");
  await assertExactlyOnce(t, jobId, "KILL", 12_000);
});

test.serial("nats-server killed and restarted mid-job: the job still completes, every item applied exactly once", async (t) => {
  const jobId = await stagedJob("RESTART", 12_000, 200);
  if (workers.size === 0) startWorker();
  await topUp(db, nats, queue, { merchantId, jobId });
  await waitFor(
    "some chunks to be applied",
    async () => ((await findJob(db, merchantId, jobId))!.chunks_done >= 8 ? true : undefined),
    90_000,
  );
  natsServer.kill();
  await new Promise((r) => setTimeout(r, 1000));
  await natsServer.start();
  await assertExactlyOnce(t, jobId, "RESTART", 12_000);
});

test.serial(
  "an upload and a rollback while nats-server is down are answered, not failed; once it is back their chunks are applied",
  async (t) => {
    // A harness of its own (API, in-process worker, stream) on this file's nats-server: the worker processes above
    // read their stream with another database.
    const h = await startBulkHarness("crash_upload", {}, { natsServers: env.NATS_URL });
    t.teardown(async () => {
      // A failure while it was down must not leave the harness draining against no server.
      if (!natsServer.running) await natsServer.start();
      await h.close();
    });
    const { bulk, catalog } = h;
    const rows = Array.from({ length: 10 }, (_, i) => `DOWN-${i},Thing ${i},1.00,EUR,3`);
    const file = new TextEncoder().encode(`sku,title,price,currency,stock\n${rows.join("\n")}\n`);
    async function* upload() {
      yield { payload: { case: "options" as const, value: { format: BulkFileFormat.CSV, requestId: "upload-while-down" } } };
      yield { payload: { case: "chunk" as const, value: file } };
    }
    const settled = async (jobId: string, state: BulkJobState) =>
      waitFor(
        `job ${jobId} to be ${BulkJobState[state]}`,
        async () => ((await bulk.getBulkJob({ jobId })).job!.state === state ? true : undefined),
        60_000,
      );

    natsServer.kill();
    const { job } = await bulk.uploadBulkFile(upload());
    t.is(job!.state, BulkJobState.QUEUED, "the upload is accepted: its chunks wait in the ledger");
    t.is(job!.counts!.valid, 10n);
    await natsServer.start();
    await settled(job!.id, BulkJobState.SUCCEEDED);
    t.is((await catalog.getProduct({ sku: "DOWN-9" })).product!.stock, 3);
    // The client's retry of the upload is the same job, applied once.
    t.is((await bulk.uploadBulkFile(upload())).job!.id, job!.id);

    natsServer.kill();
    const { job: rolling } = await bulk.rollbackBulkJob({ jobId: job!.id });
    t.is(rolling!.state, BulkJobState.ROLLING_BACK, "the rollback is accepted");
    await natsServer.start();
    await settled(job!.id, BulkJobState.ROLLED_BACK);
    await t.throwsAsync(catalog.getProduct({ sku: "DOWN-9" }), { message: /not found/ });
  },
);
