import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { BulkItemOutcome, BulkJobState } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { startTestApi } from "@stockroom/common/testing";
import { catalogModule, type CatalogTables } from "@stockroom/catalog";
import { applyChunk } from "../src/apply.ts";
import { CHUNK_FORMAT, ROW_FORMAT, type StagedItem } from "../src/domain.ts";
import { rollbackChunk, startRollback } from "../src/rollback.ts";
import { findJob } from "../src/jobs.ts";
import { bulkModule } from "../src/module.ts";
import { finishStaging, stageLines, type ParsedLine } from "../src/stage.ts";
import type { BulkTables } from "../src/store.ts";
import { csvJob } from "./csv-job.ts";

const api = await startTestApi<CatalogTables & BulkTables>("bulk_read", (db) => [
  catalogModule(db),
  bulkModule(db, { watchIntervalMs: 50 }),
]);
const db = api.api.db;
const bulkA = api.client(BulkJobService, api.merchantA);
const bulkB = api.client(BulkJobService, api.merchantB);
const merchantId = api.merchantA.merchantId;
test.after.always(() => api.close());

async function* lines(prefix: string, n: number, badEvery: number): AsyncIterable<ParsedLine> {
  for (let i = 0; i < n; i++) {
    const item: StagedItem = { sku: `${prefix}-${i}`, title: `T ${i}`, priceMinor: 100, currency: "EUR" };
    yield i % badEvery === badEvery - 1
      ? {
          line: i + 2,
          kind: "invalid",
          sku: `${prefix}-${i}`,
          errors: [{ field: "price", code: "BAD_NUMBER", message: "=1+1 is not a price" }],
        }
      : { line: i + 2, kind: "valid", item };
  }
}

/** stagedJob creates a staged job of n lines (in the given chunk format); apply chunks with the returned function. */
async function stagedJob(n: number, chunkSize = 100, maxFormat = CHUNK_FORMAT) {
  const { jobId } = await csvJob(db, merchantId, "r.csv");
  const staged = await stageLines(db, { merchantId, jobId }, lines(jobId.slice(-6), n, 10), {
    chunkSize,
    stagedVersions: true,
    maxFormat,
  });
  await finishStaging(db, { merchantId, jobId }, staged, false);
  return { jobId, staged, apply: (chunkNo: number) => applyChunk(db, { merchantId, jobId, chunkNo }) };
}

test.serial("get, list and page through items with an outcome filter", async (t) => {
  const { jobId, staged, apply } = await stagedJob(250);
  for (let c = 0; c < staged.chunks; c++) await apply(c);
  const { job } = await bulkA.getBulkJob({ jobId });
  t.is(job!.state, BulkJobState.PARTIALLY_SUCCEEDED);
  t.deepEqual([job!.counts!.total, job!.counts!.applied, job!.counts!.invalid], [250n, 225n, 25n]);
  const { jobs } = await bulkA.listBulkJobs({});
  t.true(jobs.some((j) => j.id === jobId));
  const invalid: bigint[] = [];
  let pageToken = "";
  do {
    const page = await bulkA.listBulkJobItems({ jobId, outcomes: [BulkItemOutcome.INVALID], pageSize: 10, pageToken });
    invalid.push(...page.items.map((i) => i.lineNumber));
    t.true(page.items.every((i) => i.outcome === BulkItemOutcome.INVALID && i.errors[0]?.code === "BAD_NUMBER"));
    pageToken = page.nextPageToken;
  } while (pageToken);
  t.is(invalid.length, 25);
  t.deepEqual(
    invalid,
    [...invalid].sort((a, b) => Number(a - b)),
  );
});

test.serial("watch streams progress until the job ends", async (t) => {
  const { jobId, staged, apply } = await stagedJob(400);
  const seen: { state: BulkJobState; applied: bigint }[] = [];
  const watching = (async () => {
    for await (const { job } of bulkA.watchBulkJob({ jobId })) seen.push({ state: job!.state, applied: job!.counts!.applied });
  })();
  for (let c = 0; c < staged.chunks; c++) {
    await apply(c);
    await new Promise((r) => setTimeout(r, 80));
  }
  await watching;
  t.is(seen[0]!.state, BulkJobState.QUEUED);
  t.is(seen.at(-1)!.state, BulkJobState.PARTIALLY_SUCCEEDED);
  t.is(seen.at(-1)!.applied, 360n);
  t.true(seen.length >= 3, "intermediate progress was streamed");
  t.deepEqual(
    seen.map((s) => s.applied),
    [...seen.map((s) => s.applied)].sort((a, b) => Number(a - b)),
    "counts only grow",
  );
});

test.serial(
  "many open watches of a merchant's jobs cost one statement a look, not one each; every stream sees its job to the end",
  async (t) => {
    const jobs = [await stagedJob(200), await stagedJob(200), await stagedJob(200)];
    const isLook = (sql: string) => /^select \* from `bulk_jobs` where `merchant_id` = \? and `job_id` in \(/.test(sql);
    const looks = () => api.queries.filter(({ sql }) => isLook(sql));
    const before = looks().length;
    const perJobReads = () =>
      api.queries.filter(({ sql }) => /^select \* from `bulk_jobs` where `merchant_id` = \? and `job_id` = \?/.test(sql)).length;
    const singleBefore = perJobReads();
    // Ten streams per job, as a dashboard's tabs and an integration would open them.
    const watching = jobs.flatMap(({ jobId }) =>
      Array.from({ length: 10 }, async () => {
        const seen: BulkJobState[] = [];
        for await (const { job } of bulkA.watchBulkJob({ jobId })) seen.push(job!.state);
        return seen;
      }),
    );
    await new Promise((r) => setTimeout(r, 500));
    // 50 ms looks for half a second: one statement each for the 30 streams, which read their job once, when they opened.
    const n = looks().length - before;
    t.true(n >= 3 && n <= 12, `${n} looks`);
    t.is(perJobReads() - singleBefore, 30, "each stream read its job once, when it opened");
    t.is(looks().at(-1)!.parameters.length, 4, "the merchant and its 3 watched jobs, in one statement");
    for (const { staged, apply } of jobs) for (let c = 0; c < staged.chunks; c++) await apply(c);
    const seen = await Promise.all(watching);
    for (const states of seen) {
      t.is(states[0], BulkJobState.QUEUED);
      t.is(states.at(-1), BulkJobState.PARTIALLY_SUCCEEDED);
    }
  },
);

test.serial("a watched job that is gone (a discarded duplicate upload) ends its watches with NOT_FOUND", async (t) => {
  const { jobId } = await stagedJob(10);
  const watch = (async () => {
    for await (const _ of bulkA.watchBulkJob({ jobId }))
      await db.deleteFrom("bulk_jobs").where("merchant_id", "=", merchantId).where("job_id", "=", jobId).execute();
  })();
  t.is(ConnectError.from(await t.throwsAsync(watch)).code, Code.NotFound);
});

test.serial("cancel stops the chunks not yet applied", async (t) => {
  const { jobId, staged, apply } = await stagedJob(300);
  await apply(0);
  const { job } = await bulkA.cancelBulkJob({ jobId });
  t.is(job!.state, BulkJobState.CANCELLED);
  for (let c = 1; c < staged.chunks; c++) await apply(c);
  const after = (await bulkA.getBulkJob({ jobId })).job!;
  t.is(after.counts!.applied, 100n, "only the first chunk's 100 valid items");
  t.is(after.state, BulkJobState.CANCELLED);
});

test.serial("the CSV report lists every item and defuses formula cells", async (t) => {
  const { jobId, staged, apply } = await stagedJob(30);
  for (let c = 0; c < staged.chunks; c++) await apply(c);
  let csv = "";
  for await (const { chunk } of bulkA.downloadBulkJobReport({ jobId })) csv += new TextDecoder().decode(chunk);
  const rows = csv.trimEnd().split("\r\n");
  t.is(rows[0], "line_number,sku,outcome,field,code,message");
  t.is(rows.length, 31);
  t.true(rows.includes(`11,${jobId.slice(-6)}-9,INVALID,price,BAD_NUMBER,'=1+1 is not a price`));
});

test.serial("another merchant cannot see, watch, cancel or read the items of a job", async (t) => {
  const { jobId } = await stagedJob(10);
  const notFound = async (call: Promise<unknown>) => t.is(ConnectError.from(await t.throwsAsync(call)).code, Code.NotFound);
  await notFound(bulkB.getBulkJob({ jobId }));
  await notFound(bulkB.cancelBulkJob({ jobId }));
  await notFound(bulkB.listBulkJobItems({ jobId }));
  await notFound(
    (async () => {
      for await (const _ of bulkB.watchBulkJob({ jobId })) break;
    })(),
  );
  await notFound(
    (async () => {
      for await (const _ of bulkB.downloadBulkJobReport({ jobId })) break;
    })(),
  );
  t.false((await bulkB.listBulkJobs({})).jobs.some((j) => j.id === jobId));
  t.is((await bulkA.getBulkJob({ jobId })).job!.state, BulkJobState.QUEUED, "untouched");
});

test.serial("a compact job (format 3) lists, pages, filters and reports its items as a row-staged one (format 2) does", async (t) => {
  const jobs = [await stagedJob(250, 50, ROW_FORMAT), await stagedJob(250, 50, CHUNK_FORMAT)];
  /** listing reads every page of a job's items, SKUs without the job's prefix. */
  const listing = async (jobId: string, outcomes: BulkItemOutcome[], pageSize: number) => {
    const items: string[] = [];
    let pageToken = "";
    do {
      const page = await bulkA.listBulkJobItems({ jobId, outcomes, pageSize, pageToken });
      for (const i of page.items) {
        items.push(
          [i.lineNumber, i.sku.slice(7), BulkItemOutcome[i.outcome], i.productVersion, i.errors.map((e) => e.code).join()].join(" "),
        );
      }
      pageToken = page.nextPageToken;
    } while (pageToken);
    return items;
  };
  const report = async (jobId: string) => {
    let csv = "";
    for await (const { chunk } of bulkA.downloadBulkJobReport({ jobId })) csv += new TextDecoder().decode(chunk);
    return csv.replaceAll(`${jobId.slice(-6)}-`, "");
  };
  const { APPLIED, PENDING, INVALID, ROLLED_BACK, CONFLICT } = BulkItemOutcome;
  const filters = [[], [APPLIED], [PENDING], [INVALID], [APPLIED, INVALID], [ROLLED_BACK, CONFLICT]];
  const same = async (when: string, expected: Record<string, number>) => {
    const [rows, compact] = jobs.map((j) => j.jobId) as [string, string];
    for (const outcomes of filters) {
      for (const pageSize of [7, 1000]) {
        const a = await listing(rows, outcomes, pageSize);
        t.deepEqual(await listing(compact, outcomes, pageSize), a, `${when}: outcomes ${outcomes.join()}, pages of ${pageSize}`);
      }
    }
    t.is(await report(compact), await report(rows), `${when}: the report`);
    const all = await listing(compact, [], 1000);
    t.is(all.length, 250);
    const counts: Record<string, number> = {};
    for (const line of all) counts[line.split(" ")[2]!] = (counts[line.split(" ")[2]!] ?? 0) + 1;
    t.deepEqual(counts, expected, when);
  };
  for (const j of jobs) for (const c of [0, 1, 2]) await j.apply(c);
  await same("part applied", { APPLIED: 150, PENDING: 75, INVALID: 25 });
  for (const j of jobs) for (const c of [3, 4]) await j.apply(c);
  await same("applied", { APPLIED: 225, INVALID: 25 });
  // One product is changed by someone else before the rollback: a conflict, kept as it is.
  for (const j of jobs) {
    const sku = `${j.jobId.slice(-6)}-50`;
    await db
      .updateTable("products")
      .set((eb) => ({ title: "Someone else", version: eb("version", "+", 1) }))
      .where("merchant_id", "=", merchantId)
      .where("sku", "=", sku)
      .execute();
    await startRollback(db, (await findJob(db, merchantId, j.jobId))!, "skip");
    for (let c = 0; c < j.staged.chunks; c++) await rollbackChunk(db, { merchantId, jobId: j.jobId, chunkNo: c });
    t.is((await findJob(db, merchantId, j.jobId))!.state, "rolled_back");
  }
  await same("rolled back", { ROLLED_BACK: 224, CONFLICT: 1, INVALID: 25 });
  const [rowItems, compactItems] = await Promise.all(
    jobs.map((j) =>
      db
        .selectFrom("bulk_job_items")
        .select((eb) => eb.fn.countAll<number>().as("n"))
        .where("job_id", "=", j.jobId)
        .executeTakeFirstOrThrow(),
    ),
  );
  t.deepEqual([Number(rowItems!.n), Number(compactItems!.n)], [250, 26], "format 3 keeps rows only for the lines that did not apply");
});

test("plain HTTP + JSON (Connect) sends the contract's full 4 MiB part, as base64; one byte more is refused by name", async (t) => {
  // What a client without a library sends: fetch, JSON, bytes as base64.
  const call = async (method: string, body: unknown) => {
    const res = await fetch(`${api.url}/stockroom.bulk.v1.BulkJobService/${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${api.merchantA.apiKey}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & { code?: string; message?: string } };
  };
  const created = await call("CreateUpload", { options: { format: "BULK_FILE_FORMAT_CSV" } });
  const uploadId = (created.body["upload"] as { id: string }).id;
  const part = Buffer.alloc(4 * 1024 * 1024, 0x61);
  const appended = await call("AppendUploadPart", { uploadId, offset: "0", data: part.toString("base64") });
  t.is(appended.status, 200, JSON.stringify(appended.body));
  t.is(appended.body["committedSize"], String(part.length));
  const over = await call("AppendUploadPart", {
    uploadId,
    offset: String(part.length),
    data: Buffer.alloc(part.length + 1).toString("base64"),
  });
  t.is(over.body.code, "invalid_argument");
  t.regex(over.body.message ?? "", /must be at most 4194304 bytes/);
});
