import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { sql } from "kysely";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { startTestApi } from "@stockroom/common/testing";
import { catalogModule, type CatalogTables } from "@stockroom/catalog";
import { applyChunk } from "../src/apply.ts";
import type { StagedItem } from "../src/domain.ts";
import { bulkModule } from "../src/module.ts";
import { DEFAULT_RETENTION, prune } from "../src/prune.ts";
import { finishStaging, stageLines, type ParsedLine } from "../src/stage.ts";
import { createUpload, appendPart } from "../src/uploads.ts";
import type { BulkTables } from "../src/store.ts";
import { csvJob } from "./csv-job.ts";

const api = await startTestApi<CatalogTables & BulkTables>("bulk_prune", (db) => [catalogModule(db), bulkModule(db)]);
const db = api.api.db;
const bulkA = api.client(BulkJobService, api.merchantA);
const merchantId = api.merchantA.merchantId;
test.after.always(() => api.close());

const DAY = 86_400_000;

async function* lines(prefix: string, n: number): AsyncIterable<ParsedLine> {
  for (let i = 0; i < n; i++) {
    const item: StagedItem = { sku: `${prefix}-${i}`, title: `T ${i}`, priceMinor: 100, currency: "EUR" };
    yield { line: i + 2, kind: "valid", item };
  }
}

async function finishedJob(prefix: string, endedAt: Date) {
  const { jobId } = await csvJob(db, merchantId, "p.csv");
  const staged = await stageLines(db, { merchantId, jobId }, lines(prefix, 30), { chunkSize: 10, stagedVersions: false });
  await finishStaging(db, { merchantId, jobId }, staged, false);
  for (let c = 0; c < staged.chunks; c++) await applyChunk(db, { merchantId, jobId, chunkNo: c });
  await db.updateTable("bulk_jobs").set({ ended_at: endedAt }).where("merchant_id", "=", merchantId).where("job_id", "=", jobId).execute();
  return jobId;
}

const count = async (table: string, column: string, value: string) => {
  const { rows } = await sql<{
    n: number;
  }>`SELECT COUNT(*) AS n FROM ${sql.table(table)} WHERE merchant_id = ${merchantId} AND ${sql.ref(column)} = ${value}`.execute(db);
  return Number(rows[0]!.n);
};

test.serial("prune removes old idempotency keys, expired uploads and old jobs' item details, and nothing newer", async (t) => {
  const now = new Date();
  for (const [requestId, age] of [
    ["old-key", 3 * DAY],
    ["new-key", 3600_000],
  ] as const) {
    await db
      .insertInto("idempotency_keys")
      .values({
        merchant_id: merchantId,
        request_id: requestId,
        method: "test",
        request_sha256: Buffer.alloc(32),
        response: null,
        created_at: new Date(now.getTime() - age),
      })
      .execute();
  }
  const options = { format: "csv" as const, conflictPolicy: "overwrite" as const, dryRun: false, fileName: "u.csv", requestId: "" };
  const expired = await createUpload(db, merchantId, options, null, 1000, new Date(now.getTime() - DAY));
  await appendPart(db, merchantId, expired.upload_id, 0, Buffer.from("sku,title\n"), new Date(now.getTime() - DAY + 1));
  const live = await createUpload(db, merchantId, options, null, DAY, now);
  await appendPart(db, merchantId, live.upload_id, 0, Buffer.from("sku,title\n"), now);
  const oldJob = await finishedJob("OLD", new Date(now.getTime() - 31 * DAY));
  const newJob = await finishedJob("NEW", new Date(now.getTime() - DAY));

  const result = await prune(db, { ...DEFAULT_RETENTION, batch: 7 }, now);
  t.deepEqual(result, { idempotencyKeys: 1, uploads: 1, jobs: 1, jobItems: 30 });
  t.is(await count("idempotency_keys", "request_id", "old-key"), 0);
  t.is(await count("idempotency_keys", "request_id", "new-key"), 1);
  t.is(await count("bulk_upload_parts", "upload_id", expired.upload_id), 0);
  t.is(await count("bulk_uploads", "upload_id", expired.upload_id), 0);
  t.is(await count("bulk_upload_parts", "upload_id", live.upload_id), 1);
  t.is(await count("bulk_job_items", "job_id", oldJob), 0);
  t.is(await count("bulk_job_chunks", "job_id", oldJob), 0);
  t.is(await count("bulk_job_items", "job_id", newJob), 30);

  // The old job keeps its counts; its item details answer that they expired.
  const { job } = await bulkA.getBulkJob({ jobId: oldJob });
  t.is(job!.counts?.applied, 30n);
  const error = await t.throwsAsync(bulkA.listBulkJobItems({ jobId: oldJob }));
  t.is(ConnectError.from(error).code, Code.FailedPrecondition);
  t.regex(ConnectError.from(error).rawMessage, /retention/);
  t.is((await bulkA.listBulkJobItems({ jobId: newJob })).items.length, 30);
  const again = await prune(db, DEFAULT_RETENTION, now);
  t.deepEqual(again, { idempotencyKeys: 0, uploads: 0, jobs: 0, jobItems: 0 });
});
