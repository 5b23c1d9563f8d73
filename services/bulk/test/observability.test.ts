import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";
import path from "node:path";
import test from "ava";
import { sql } from "kysely";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { BulkFileFormat, ConflictPolicy } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService, type UploadBulkFileRequestSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import {
  startOtlpReceiver,
  scrape,
  sumOf,
  type Sample,
  freePort,
  testDatabaseUrl,
  waitFor,
  dropTestDatabase,
} from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { connectNats } from "@stockroom/common/nats";
import { catalogMigrations, NO_MERCHANDISING, writeProducts } from "@stockroom/catalog";
import type { BulkDb } from "../src/store.ts";
import { parseBulkConfig } from "../src/config.ts";
import { slotBucket } from "../src/host-slots.ts";
import { findJob } from "../src/jobs.ts";
import { ensureChunkQueue } from "../src/queue.ts";
import { bulkMigrations } from "../src/store.ts";

// One bulk job through real processes, as Nomad runs them: the bulk API and
// two workers, each exporting traces to an OTLP receiver in this test and
// serving /metrics. The job is one trace, and the workers' counters add up
// to the job's outcome counts.
const root = path.join(import.meta.dirname, "..", "..", "..");
const url = testDatabaseUrl("bulk_obs");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 4 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const merchant = await createMerchant(db, "Observed merchant");
const receiver = await startOtlpReceiver();
const suffix = randomBytes(4).toString("hex");
const stream = `BULK_OBS_${suffix}`;
const children = new Set<ChildProcess>();
const env = {
  DATABASE_URL: url,
  NATS_URL: "nats://127.0.0.1:4222",
  LOG_LEVEL: process.env["TEST_LOG_LEVEL"] ?? "silent",
  OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
  OTEL_BSP_SCHEDULE_DELAY: "200",
  BULK_STREAM: stream,
  BULK_SUBJECT_PREFIX: `t_${suffix}.obs.chunk`,
  BULK_DURABLE: "workers",
  BULK_CHUNK_SIZE: "20",
  BULK_JOB_WINDOW: "2",
  BULK_WORKER_CONCURRENCY: "1",
  BULK_RECONCILE_EVERY_MS: "0", // top-ups come from the workers, so each links the chunk span that caused it
  BULK_WORKERS_DESIRED: "2",
  // Both workers apply, whatever this host's CPU count (its default number of host slots).
  BULK_WORKER_SLOTS_PER_HOST: "2",
  DB_POOL_SIZE: "4",
};
// The stream exists before the API publishes to it (workers would create it too, but start later).
const nats = await connectNats({ servers: env.NATS_URL, name: "bulk-obs-test" });
await ensureChunkQueue(nats.jsm, parseBulkConfig(env).queue);
test.after.always(async () => {
  for (const c of children) c.kill("SIGKILL");
  await receiver.close();
  await nats.jsm.streams.delete(stream).catch(() => {});
  await nats.jsm.streams.delete(`KV_${slotBucket(stream)}`).catch(() => {});
  await nats.close();
  await db.destroy();
  await dropTestDatabase(url);
});

/** threadNiceness lists the scheduling niceness of each thread of a process (Linux: field 19 of /proc/<pid>/task/<tid>/stat). */
function threadNiceness(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });
}

function start(entrypoint: string, extra: Record<string, string>): { child: ChildProcess; exited: Promise<unknown> } {
  const child = spawn(process.execPath, [path.join(root, entrypoint)], {
    env: { ...process.env, ...env, ...extra },
    stdio: ["ignore", "ignore", "inherit"],
  });
  children.add(child);
  const exited = new Promise((resolve) => child.once("exit", resolve)).finally(() => children.delete(child));
  return { child, exited };
}

async function stop(p: { child: ChildProcess; exited: Promise<unknown> }) {
  p.child.kill("SIGTERM"); // drains, then flushes its spans
  await p.exited;
}

const line = (o: Record<string, unknown>) => `${JSON.stringify(o)}\n`;

test("one bulk job is one trace across the API and worker processes, and the metrics count its items exactly", async (t) => {
  // The catalog holds 10 products the file repeats unchanged and 10 it will find changed since staging.
  const now = new Date();
  const existing = (sku: string) => ({
    kind: "create" as const,
    product: {
      id: newUlid(),
      sku,
      title: `Title ${sku}`,
      description: "",
      priceMinor: 100,
      currency: "EUR",
      stock: 0,
      status: "active" as const,
      attributes: {},
      ...NO_MERCHANDISING,
    },
  });
  const creates = [
    ...Array.from({ length: 10 }, (_, i) => existing(`U-${i}`)),
    ...Array.from({ length: 10 }, (_, i) => existing(`C-${i}`)),
  ];
  await db
    .transaction()
    .execute((trx) => writeProducts(trx, { merchantId: merchant.merchantId, actor: "test", sourceKind: "api" }, creates, now));
  const file = [
    ...Array.from({ length: 45 }, (_, i) => line({ sku: `N-${i}`, title: `New ${i}`, price: "2.50", currency: "EUR" })), // applied
    ...Array.from({ length: 10 }, (_, i) => line({ sku: `U-${i}`, title: `Title U-${i}`, price: "1.00", currency: "EUR" })), // unchanged
    ...Array.from({ length: 10 }, (_, i) => line({ sku: `C-${i}`, title: `Changed ${i}` })), // conflict
    ...Array.from({ length: 5 }, (_, i) => line({ sku: `X-${i}`, stock: "3" })), // invalid when applied: a new product needs a title
    ...Array.from({ length: 4 }, (_, i) => line({ sku: `B-${i}`, title: "Bad", price: "-1", currency: "EUR" })), // invalid at staging
  ].join("");

  const [apiPort, apiMetrics, w1Metrics, w2Metrics] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const api = start("services/bulk/src/main.ts", { PORT: String(apiPort), METRICS_PORT: String(apiMetrics), MIGRATE_ON_START: "false" });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const health = createClient(Health, createGrpcTransport({ baseUrl: apiUrl }));
  await waitFor(
    "the bulk API to serve",
    () =>
      health.check({}, { timeoutMs: 500 }).then(
        (r) => (r.status === Status.SERVING ? true : undefined),
        () => undefined,
      ),
    30_000,
  );

  const transport = createGrpcTransport({
    baseUrl: apiUrl,
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${merchant.apiKey}`), next(req))],
  });
  const bulk = createClient(BulkJobService, transport);
  async function* upload(): AsyncIterable<MessageInitShape<typeof UploadBulkFileRequestSchema>> {
    yield {
      payload: {
        case: "options",
        value: { format: BulkFileFormat.JSON_LINES, conflictPolicy: ConflictPolicy.SKIP, fileName: "obs.jsonl" },
      },
    };
    yield { payload: { case: "chunk", value: new TextEncoder().encode(file) } };
  }
  const { job: uploaded } = await bulk.uploadBulkFile(upload());
  const jobId = uploaded!.id;
  // No worker runs yet: change the C products after staging read their versions, so they conflict.
  await sql`UPDATE products SET title = CONCAT(title, ' (edited)'), version = version + 1 WHERE merchant_id = ${merchant.merchantId} AND sku LIKE 'C-%'`.execute(
    db,
  );

  // Both workers take part: the test holds the job row, so each worker (concurrency 1) blocks
  // inside its first chunk until both hold one and serve their metrics.
  const workers = await db.transaction().execute(async (trx) => {
    await sql`SELECT job_id FROM bulk_jobs WHERE merchant_id = ${merchant.merchantId} AND job_id = ${jobId} FOR UPDATE`.execute(trx);
    const started = [w1Metrics, w2Metrics].map((port) => start("services/bulk/src/worker-main.ts", { METRICS_PORT: String(port) }));
    for (const port of [w1Metrics, w2Metrics]) {
      await waitFor(
        `worker metrics on ${port}`,
        () =>
          fetch(`http://127.0.0.1:${port}/readyz`).then(
            (r) => (r.ok ? true : undefined),
            () => undefined,
          ),
        30_000,
      );
    }
    await waitFor(
      "both workers to hold a chunk",
      async () => ((await nats.jsm.consumers.info(stream, "workers")).num_ack_pending === 2 ? true : undefined),
      30_000,
    );
    return started;
  });
  // ---- CPU priority: every thread of a worker runs at BULK_WORKER_NICE (default 10), the API's as this process's
  if (process.platform === "linux") {
    for (const w of workers) t.deepEqual(new Set(threadNiceness(w.child.pid!)), new Set([10]), "a worker's threads are niced");
    t.deepEqual(new Set(threadNiceness(api.child.pid!)), new Set([getPriority()]), "the API keeps its priority");
  }

  const job = await waitFor(
    "the job to end",
    async () => {
      const j = await findJob(db, merchant.merchantId, jobId);
      return j && !["receiving", "validating", "queued", "running"].includes(j.state) ? j : undefined;
    },
    60_000,
  );
  t.is(job.state, "partially_succeeded");
  t.deepEqual(
    {
      applied: job.applied_items,
      unchanged: job.unchanged_items,
      conflict: job.conflict_items,
      invalid: job.invalid_items,
      failed: job.failed_items,
    },
    { applied: 45, unchanged: 10, conflict: 10, invalid: 9, failed: 0 },
  );

  // ---- metrics: what the three processes counted is exactly the job's outcome
  // A worker counts a chunk's items after its transaction commits, so the job can read as ended a moment
  // before the last chunk's counts are in: scrape until they add up (or time out and compare what is there).
  const outcomes = ["applied", "unchanged", "conflict", "invalid", "failed"] as const;
  const scrapeAll = async () =>
    (await Promise.all([apiMetrics, w1Metrics, w2Metrics].map((p) => scrape(`http://127.0.0.1:${p}/metrics`)))).flat();
  let samples: Sample[] = await scrapeAll();
  const complete = (s: Sample[]) =>
    outcomes.every((o) => sumOf(s, "stockroom_bulk_items_total", { outcome: o }) === Number(job[`${o}_items`]));
  for (let i = 0; i < 50 && !complete(samples); i++) {
    await new Promise((r) => setTimeout(r, 100));
    samples = await scrapeAll();
  }
  for (const outcome of outcomes) {
    t.is(
      sumOf(samples, "stockroom_bulk_items_total", { outcome }),
      Number(job[`${outcome}_items`]),
      `stockroom_bulk_items_total{outcome="${outcome}"}`,
    );
  }
  t.is(sumOf(samples, "stockroom_bulk_chunk_duration_seconds_count", { kind: "apply", result: "applied" }), job.chunk_count);
  t.is(sumOf(samples, "stockroom_bulk_jobs_finished_total", { state: "partially_succeeded" }), 1);
  t.is(sumOf(samples, "stockroom_rpc_server_duration_seconds_count", { method: "UploadBulkFile", code: "OK", tier: "standard" }), 1);
  t.is(samples.filter((s) => s.name === "stockroom_bulk_worker_concurrency").length, 2, "one worker-count series per worker");
  t.deepEqual(
    samples.filter((s) => s.name === "stockroom_bulk_worker_active").map((s) => s.value),
    [1, 1],
    "both workers hold a host slot and apply",
  );
  t.deepEqual(
    samples.filter((s) => s.name === "stockroom_bulk_workers_desired").map((s) => [s.labels["stream"], s.value]),
    [[stream, 2]],
    "the bulk API, not the workers, says 2 are desired",
  );
  t.is(sumOf(samples, "stockroom_jetstream_consumer_pending_messages", { stream, consumer: "workers" }), 0, "the queue is drained");
  t.true(samples.some((s) => s.name === "stockroom_jetstream_consumer_ack_pending_messages" && s.labels["stream"] === stream));
  t.true(samples.some((s) => s.name === "stockroom_db_pool_connections_in_use" && s.labels["pool"] === "main"));
  t.true(
    samples.some((s) => s.name === "stockroom_outbox_backlog_events"),
    "the API exports the outbox backlog",
  );
  t.is(sumOf(samples, "stockroom_dependency_up", { dependency: "nats" }), 3);

  // ---- traces: stop the processes so every span is flushed, then check the job's trace
  // With every worker gone, the API still says how many are wanted and how far behind the queue is,
  // so the worker-count and queue-lag alerts can fire (tools/observability/alerts.test.yml).
  await Promise.all(workers.map(stop));
  const alone = await scrape(`http://127.0.0.1:${apiMetrics}/metrics`);
  t.is(sumOf(alone, "stockroom_bulk_workers_desired", { stream }), 2);
  t.false(
    alone.some((s) => s.name === "stockroom_bulk_worker_concurrency"),
    "the API runs no worker",
  );
  t.true(alone.some((s) => s.name === "stockroom_jetstream_consumer_pending_messages" && s.labels["stream"] === stream));
  t.true(alone.some((s) => s.name === "stockroom_jetstream_consumer_ack_pending_messages" && s.labels["stream"] === stream));
  await stop(api);
  const spans = receiver.spans;
  const uploadSpan = spans.find((s) => s.name === "stockroom.bulk.v1.BulkJobService/UploadBulkFile");
  t.truthy(uploadSpan, `upload span among ${spans.length} spans`);
  t.is(uploadSpan!.parentSpanId, "", "the upload call starts the trace");
  t.is(uploadSpan!.resource["service.name"], "stockroom-bulk-api");
  t.is(uploadSpan!.attributes["stockroom.bulk.job_id"], jobId);
  t.is(uploadSpan!.attributes["stockroom.merchant_id"], merchant.merchantId);
  const traceId = uploadSpan!.traceId;
  const ofJob = spans.filter((s) => s.attributes["stockroom.bulk.job_id"] === jobId);
  t.deepEqual([...new Set(ofJob.map((s) => s.traceId))], [traceId], "every span naming the job is in the upload's trace");

  const inTrace = spans.filter((s) => s.traceId === traceId);
  const byId = new Map(inTrace.map((s) => [s.spanId, s]));
  t.deepEqual(
    inTrace.filter((s) => s.parentSpanId === "").map((s) => s.name),
    [uploadSpan!.name],
    "one root",
  );
  t.deepEqual(
    inTrace.filter((s) => s.parentSpanId !== "" && !byId.has(s.parentSpanId)).map((s) => s.name),
    [],
    "every parent is in the trace",
  );

  const sends = inTrace.filter((s) => s.name.startsWith("send ") && s.attributes["stockroom.bulk.job_id"] === jobId);
  const processes = inTrace.filter((s) => s.name.startsWith("process ") && s.resource["service.name"] === "stockroom-bulk-worker");
  t.true(sends.length >= job.chunk_count, `${sends.length} publishes for ${job.chunk_count} chunks`);
  t.true(
    sends.every((s) => s.parentSpanId === uploadSpan!.spanId),
    "each chunk is published as a child of the upload, whoever publishes it",
  );
  t.true(
    sends.some(
      (s) =>
        s.resource["service.name"] === "stockroom-bulk-worker" &&
        s.links.length === 1 &&
        byId.get(s.links[0]!.spanId)?.name.startsWith("process "),
    ),
    "a worker's top-up links the chunk span that caused it",
  );
  t.true(
    processes.every((p) => byId.get(p.parentSpanId)?.name.startsWith("send ")),
    "each worker span continues its chunk's publish",
  );
  const applied = processes.filter((p) => p.attributes["stockroom.bulk.outcome"] === "applied");
  t.deepEqual(
    applied.map((p) => p.attributes["stockroom.bulk.chunk_no"]).sort((a, b) => Number(a) - Number(b)),
    Array.from({ length: job.chunk_count }, (_, i) => i),
  );
  const itemsSum = (k: string) => applied.reduce((n, p) => n + Number(p.attributes[`stockroom.bulk.items.${k}`] ?? 0), 0);
  t.deepEqual(
    { applied: itemsSum("applied"), unchanged: itemsSum("unchanged"), conflict: itemsSum("conflict"), invalid: itemsSum("invalid") },
    { applied: 45, unchanged: 10, conflict: 10, invalid: 5 },
  );
  const sqlInWorkers = inTrace.filter(
    (s) => s.resource["service.name"] === "stockroom-bulk-worker" && s.attributes["db.system.name"] === "mysql",
  );
  t.true(
    sqlInWorkers.length > 0 && sqlInWorkers.every((s) => byId.get(s.parentSpanId)?.name.startsWith("process ")),
    "workers' SQL nests under their chunk span",
  );

  // Each process is its own resource; nothing recorded holds the API key.
  const workerInstances = new Set(processes.map((p) => `${p.resource["service.instance.id"]}/${p.resource["process.pid"]}`));
  t.is(workerInstances.size, 2, "both workers applied chunks, each with its own service.instance.id and pid");
  t.true(processes.every((p) => typeof p.resource["host.name"] === "string"));
  const secret = merchant.apiKey.slice(-43); // the key ends in its 43-character secret, which may itself contain "_"
  t.deepEqual(
    spans
      .filter((s) => JSON.stringify(s.attributes).includes(secret) || Object.keys(s.attributes).some((k) => /authorization/i.test(k)))
      .map((s) => s.name),
    [],
  );
});
