import { randomBytes } from "node:crypto";
import test from "ava";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { testDatabaseUrl, waitFor, dropTestDatabase } from "@stockroom/common/testing";
import { verifyAuditChain, catalogMigrations, listMerchantChanges } from "@stockroom/catalog";
import type { BulkDb } from "../src/store.ts";
import { findJob } from "../src/jobs.ts";
import { DEFAULT_QUEUE, ensureChunkQueue, topUp, type QueueConfig } from "../src/queue.ts";
import { finishStaging, stageLines, type ParsedLine } from "../src/stage.ts";
import { bulkMigrations } from "../src/store.ts";
import { startBulkWorker } from "../src/worker.ts";
import { csvJob } from "./csv-job.ts";

// Real MariaDB and NATS: a worker applies a job and, on its timer, seals the audit chain.
const url = testDatabaseUrl("bulk_audit_seal");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 8 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const nats = await connectNats({ servers: "127.0.0.1:4222", name: "bulk-audit-seal-test" });
const suffix = randomBytes(4).toString("hex");
const log = createLogger("bulk-test", (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent");
test.after.always(async () => {
  await nats.jsm.streams.delete(`BULK_T_seal_${suffix}`).catch(() => false);
  await nats.close();
  await db.destroy();
  await dropTestDatabase(url);
});

async function* lines(n: number): AsyncIterable<ParsedLine> {
  for (let i = 0; i < n; i++)
    yield { line: i + 2, kind: "valid", item: { sku: `SEAL-${i}`, title: `T ${i}`, priceMinor: 100 + i, currency: "EUR" } };
}

test("a worker seals a bulk job's audit rows into the merchant's chain, and stops promptly", async (t) => {
  const { merchantId } = await createMerchant(db, "Sealed merchant");
  const queue: QueueConfig = {
    ...DEFAULT_QUEUE,
    stream: `BULK_T_seal_${suffix}`,
    subjectPrefix: `t_${suffix}.seal.chunk`,
    durable: "workers",
    ackWaitMs: 2000,
    maxDeliver: 3,
    window: 2,
  };
  await ensureChunkQueue(nats.jsm, queue);
  const { jobId } = await csvJob(db, merchantId, "seal.csv");
  const staged = await stageLines(db, { merchantId, jobId }, lines(300), { chunkSize: 100, stagedVersions: true });
  await finishStaging(db, { merchantId, jobId }, staged, false);
  const worker = await startBulkWorker({ db, nats, queue, log, concurrency: 2, reconcileEveryMs: 0, sealEveryMs: 50, seal: { lagMs: 0 } });
  await topUp(db, nats, queue, { merchantId, jobId });
  await waitFor("the job to end", async () => ((await findJob(db, merchantId, jobId))?.state === "succeeded" ? true : undefined), 60_000);
  const verified = await waitFor(
    "the chain to cover the job",
    async () => {
      const v = await verifyAuditChain(db, merchantId);
      return v.sealed === 300 && v.unsealed === 0 ? v : undefined;
    },
    30_000,
  );
  t.deepEqual(verified.problems, []);
  const started = performance.now();
  await worker.stop();
  t.true(performance.now() - started < 5_000);
  // The job's audit trail, as ListChanges reads it, carries the chain positions.
  const rows = await listMerchantChanges(db, merchantId, { sourceKind: "bulk_job", sourceRef: jobId, limit: 1000 });
  t.is(rows.length, 300);
  t.deepEqual(
    rows.map((r) => Number(r.seal_seq)).sort((a, b) => a - b),
    Array.from({ length: 300 }, (_, i) => i + 1),
  );
});
