import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { BulkFileFormat, BulkItemOutcome, BulkJobState, ConflictPolicy } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { generateBulkFile } from "../../../tools/gen-bulk-file.ts";
import { startBulkHarness, type UploadRequest } from "./harness.ts";

// The whole pipeline: gRPC upload → parse → stage → JetStream → worker → products.
const limits = { chunkSize: 200, maxBytes: 2_000_000 };
const h = await startBulkHarness("upload", limits);
test.after.always(() => h.close());
const { api, bulk, catalog, suffix, finalJob } = h;

type Req = UploadRequest;
async function* stream(options: Req["payload"], chunks: Iterable<Uint8Array>): AsyncIterable<Req> {
  yield { payload: options };
  for (const chunk of chunks) yield { payload: { case: "chunk", value: chunk } };
}
const csvOptions = (extra: Record<string, unknown> = {}) =>
  ({ case: "options", value: { format: BulkFileFormat.CSV, ...extra } }) as Req["payload"];

test.serial("a 3,000-row CSV with deliberate errors: valid rows applied once, each broken line reported with its code", async (t) => {
  const file = generateBulkFile({ rows: 3000, format: "csv", seed: 7, invalidRate: 0.03, skuPrefix: `U${suffix}-` });
  const { job } = await bulk.uploadBulkFile(stream(csvOptions({ requestId: "upload-big" }), file.chunks));
  t.is(job!.state, BulkJobState.QUEUED);
  const done = await finalJob(job!.id);
  t.is(done.state, BulkJobState.PARTIALLY_SUCCEEDED);
  t.is(Number(done.counts!.applied), file.expected.validLines());
  t.is(Number(done.counts!.invalid), file.expected.invalid.size);
  const reported = new Map<number, string>();
  for (let pageToken = ""; ; ) {
    const page = await bulk.listBulkJobItems({ jobId: job!.id, outcomes: [BulkItemOutcome.INVALID], pageSize: 1000, pageToken });
    for (const item of page.items) reported.set(Number(item.lineNumber), item.errors[0]!.code);
    if (!(pageToken = page.nextPageToken)) break;
  }
  t.deepEqual(new Map([...reported].sort(([a], [b]) => a - b)), new Map([...file.expected.invalid].sort(([a], [b]) => a - b)));
});

test.serial("the same request_id, or the same content, returns the existing job; nothing is applied twice", async (t) => {
  const make = () => generateBulkFile({ rows: 300, format: "jsonl", seed: 11, skuPrefix: `D${suffix}-` }).chunks;
  const jsonl = (extra: Record<string, unknown>) =>
    ({ case: "options", value: { format: BulkFileFormat.JSON_LINES, ...extra } }) as Req["payload"];
  const first = (await bulk.uploadBulkFile(stream(jsonl({ requestId: "dup-1" }), make()))).job!;
  const byRequestId = (await bulk.uploadBulkFile(stream(jsonl({ requestId: "dup-1" }), make()))).job!;
  const byContent = (await bulk.uploadBulkFile(stream(jsonl({}), make()))).job!;
  t.is(byRequestId.id, first.id);
  t.is(byContent.id, first.id);
  const done = await finalJob(first.id);
  t.is(Number(done.counts!.applied), 300);
  const { jobs } = await bulk.listBulkJobs({});
  t.is(jobs.filter((j) => j.options!.fileName === "" && j.contentSha256 === first.contentSha256).length, 1);
});

test.serial("a dry run validates and reports without changing a product", async (t) => {
  const sku = `DRY${suffix}`;
  const body = new TextEncoder().encode(`sku,title,price,currency\n${sku},Dry,1.00,EUR\n,missing sku,1.00,EUR\n`);
  const { job } = await bulk.uploadBulkFile(stream(csvOptions({ dryRun: true }), [body]));
  t.is(job!.state, BulkJobState.PARTIALLY_SUCCEEDED);
  t.deepEqual([job!.counts!.valid, job!.counts!.invalid, job!.counts!.applied], [1n, 1n, 0n]);
  const e = ConnectError.from(await t.throwsAsync(catalog.getProduct({ sku })));
  t.is(e.code, Code.NotFound);
});

test.serial("a file-level error fails the job with a clear reason and applies nothing", async (t) => {
  const body = new TextEncoder().encode(`sku,title,colour\nX${suffix},T,red\n`);
  const { job } = await bulk.uploadBulkFile(stream(csvOptions(), [body]));
  t.is(job!.state, BulkJobState.FAILED);
  t.regex(job!.error, /UNKNOWN_COLUMN/);
  t.regex(job!.error, /colour/);
  const tooBig = await bulk.uploadBulkFile(stream(csvOptions(), [new Uint8Array(limits.maxBytes + 1).fill(65)]));
  t.regex(tooBig.job!.error, /FILE_TOO_LARGE/);
});

test.serial("the first message must carry options", async (t) => {
  const e = ConnectError.from(
    await t.throwsAsync(
      bulk.uploadBulkFile(
        (async function* () {
          yield { payload: { case: "chunk", value: new Uint8Array(1) } } as Req;
        })(),
      ),
    ),
  );
  t.is(e.code, Code.InvalidArgument);
});

test.serial(
  "resumable upload: a repeated part is harmless, a gap is refused with the committed size, complete starts the job",
  async (t) => {
    const sku = `RES${suffix}`;
    const bytes = new TextEncoder().encode(`sku,title,price,currency,stock\n${sku}-1,One,1.50,EUR,3\n${sku}-2,Two,2.50,EUR,4\n`);
    const { upload } = await bulk.createUpload({
      options: { format: BulkFileFormat.CSV, conflictPolicy: ConflictPolicy.SKIP },
      expectedSize: BigInt(bytes.length),
    });
    const part1 = bytes.subarray(0, 40);
    t.is((await bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: part1 })).committedSize, 40n);
    t.is((await bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: part1 })).committedSize, 40n, "a retried part");
    const gap = ConnectError.from(
      await t.throwsAsync(bulk.appendUploadPart({ uploadId: upload!.id, offset: 50n, data: bytes.subarray(50) })),
    );
    t.is(gap.code, Code.FailedPrecondition);
    t.is((await bulk.getUpload({ uploadId: upload!.id })).upload!.committedSize, 40n, "where to resume");
    await bulk.appendUploadPart({ uploadId: upload!.id, offset: 30n, data: bytes.subarray(30) }); // overlaps 10 bytes
    const { job } = await bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(bytes.length) });
    const again = await bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(bytes.length) });
    t.is(again.job!.id, job!.id);
    const done = await finalJob(job!.id);
    t.is(done.state, BulkJobState.SUCCEEDED);
    t.is((await catalog.getProduct({ sku: `${sku}-2` })).product!.stock, 4);
    // Another merchant cannot touch the upload.
    const other = api.client(BulkJobService, api.merchantB);
    t.is(ConnectError.from(await t.throwsAsync(other.getUpload({ uploadId: upload!.id }))).code, Code.NotFound);
  },
);
