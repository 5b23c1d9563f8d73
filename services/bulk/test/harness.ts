import { randomBytes } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { BulkFileFormat, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService, type UploadBulkFileRequestSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { startTestApi } from "@stockroom/common/testing";
import { catalogModule, type CatalogTables } from "@stockroom/catalog";
import { DEFAULT_LIMITS, type IngestLimits } from "../src/ingest.ts";
import { bulkModule } from "../src/module.ts";
import { DEFAULT_QUEUE, type QueueConfig } from "../src/queue.ts";
import { startBulkWorker } from "../src/worker.ts";
import type { BulkDb, BulkTables } from "../src/store.ts";
import { CHUNK_FORMAT } from "../src/domain.ts";
import { csvJob } from "./csv-job.ts";
import { finishStaging, stageLines, type ParsedLine } from "../src/stage.ts";

export type UploadRequest = MessageInitShape<typeof UploadBulkFileRequestSchema>;

/**
 * startBulkHarness runs the whole pipeline for one test file: the catalog and
 * bulk APIs on a fresh database, a worker, and this file's own JetStream stream.
 * options.natsServers points it at another nats-server than the shared one (a
 * file that stops its own); options.stagingStallMs shortens how soon the
 * worker fails a job whose staging stopped; options.queue overrides the
 * chunk queue's settings (maxDeliver, reconcileAfterMs, …).
 */
export async function startBulkHarness(
  name: string,
  limits: Partial<IngestLimits> = {},
  options: { natsServers?: string; stagingStallMs?: number; queue?: Partial<QueueConfig> } = {},
) {
  const suffix = randomBytes(4).toString("hex");
  const queue = {
    ...DEFAULT_QUEUE,
    stream: `BULK_${name.toUpperCase()}_${suffix}`,
    subjectPrefix: `t_${suffix}.${name}.chunk`,
    ackWaitMs: 5000,
    ...options.queue,
  };
  const nats = await connectNats({ servers: options.natsServers ?? "127.0.0.1:4222", name: `bulk-${name}-test` });
  const api = await startTestApi<CatalogTables & BulkTables>(`bulk_${name}`, (db) => [
    catalogModule(db),
    bulkModule(db, { nats, queue, limits: { ...DEFAULT_LIMITS, ...limits }, watchIntervalMs: 50 }),
  ]);
  const worker = await startBulkWorker({
    db: api.api.db,
    nats,
    queue,
    log: createLogger("worker", "silent"),
    concurrency: 2,
    reconcileEveryMs: 1000,
    ...(options.stagingStallMs !== undefined && { stagingStallMs: options.stagingStallMs }),
  });
  const bulk = api.client(BulkJobService, api.merchantA);
  return {
    api,
    suffix,
    bulk,
    nats,
    queue,
    catalog: api.client(CatalogService, api.merchantA),
    /** upload streams options then chunks over UploadBulkFile. */
    upload(options: Record<string, unknown>, chunks: Iterable<Uint8Array>) {
      async function* stream(): AsyncIterable<UploadRequest> {
        yield { payload: { case: "options", value: { format: BulkFileFormat.CSV, ...options } } };
        for (const chunk of chunks) yield { payload: { case: "chunk", value: chunk } };
      }
      return bulk.uploadBulkFile(stream());
    },
    /** finalJob follows a job with WatchBulkJob until it ends. */
    async finalJob(jobId: string) {
      let last: BulkJob | undefined;
      for await (const { job } of bulk.watchBulkJob({ jobId })) last = job;
      return last!;
    },
    async close() {
      await worker.stop();
      await nats.jsm.streams.delete(queue.stream).catch(() => {});
      await nats.close();
      await api.close();
    },
  };
}

/**
 * stagedJob creates a CSV job of n valid items (SKUs `<prefix>-0`, …, price
 * 1.00 EUR) and stages it in chunks of chunkSize, as an upload would; none
 * is published yet (topUp does that). Returns the job's id.
 */
export async function stagedJob(db: BulkDb, merchantId: string, prefix: string, n: number, chunkSize: number): Promise<string> {
  const { jobId } = await csvJob(db, merchantId, `${prefix}.csv`);
  async function* lines(): AsyncIterable<ParsedLine> {
    for (let i = 0; i < n; i++)
      yield { line: i + 2, kind: "valid", item: { sku: `${prefix}-${i}`, title: `T ${i}`, priceMinor: 100, currency: "EUR" } };
  }
  const staged = await stageLines(db, { merchantId, jobId }, lines(), { chunkSize, stagedVersions: true, maxFormat: CHUNK_FORMAT });
  await finishStaging(db, { merchantId, jobId }, staged, false);
  return jobId;
}

/**
 * stalledJob leaves what a process that died while staging a file leaves: a
 * job VALIDATING, holding its request_id (if any), whose heartbeat stopped
 * when it was made; the workers' sweep fails it once that is stallMs old.
 */
export async function stalledJob(db: BulkDb, merchantId: string, fileName: string, requestId = ""): Promise<string> {
  const { jobId } = await csvJob(db, merchantId, fileName, { requestId });
  const nothing = (async function* (): AsyncIterable<ParsedLine> {})();
  await stageLines(db, { merchantId, jobId }, nothing, { chunkSize: 200, stagedVersions: false });
  return jobId;
}
