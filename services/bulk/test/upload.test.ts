import http2 from "node:http2";
import test from "ava";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BulkFileFormat,
  BulkItemOutcome,
  BulkJobFailure,
  BulkJobState,
  ConflictPolicy,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService, UploadBulkFileRequestSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { ErrorInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { waitFor } from "@stockroom/common/testing";
import { generateBulkFile } from "../../../tools/gen-bulk-file.ts";
import { CHUNK_FORMAT } from "../src/domain.ts";
import { DEFAULT_LIMITS, failStalledStaging, ingest, readWholeFile, type IngestLimits, type WholeFile } from "../src/ingest.ts";
import { topUp } from "../src/queue.ts";
import { stageLines, type ParsedLine } from "../src/stage.ts";
import { csvJob } from "./csv-job.ts";
import { appendPart, createUpload, linkUploadJob, readUpload } from "../src/uploads.ts";
import { stalledJob, startBulkHarness, type UploadRequest } from "./harness.ts";

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
  // The call returns once the file is staged; a fast worker may already have taken its first chunk.
  t.true([BulkJobState.QUEUED, BulkJobState.RUNNING].includes(job!.state), `state ${BulkJobState[job!.state]}`);
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
  t.is(job!.failure, BulkJobFailure.FILE, "the file's fault: sending it again gets the same answer");
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
    const resumed = (await bulk.getUpload({ uploadId: upload!.id })).upload!;
    t.is(resumed.committedSize, 40n, "where to resume");
    t.is(resumed.expectedSize, BigInt(bytes.length), "the size declared at CreateUpload");
    await bulk.appendUploadPart({ uploadId: upload!.id, offset: 30n, data: bytes.subarray(30) }); // overlaps 10 bytes
    const { job } = await bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(bytes.length) });
    const again = await bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(bytes.length) });
    t.is(again.job!.id, job!.id);
    const done = await finalJob(job!.id);
    t.is(done.state, BulkJobState.SUCCEEDED);
    t.is((await catalog.getProduct({ sku: `${sku}-2` })).product!.stock, 4);
    // The audit trail names the caller that completed the upload, as it names an API edit's.
    const [created] = (await catalog.listProductHistory({ sku: `${sku}-2` })).changes;
    t.is(created!.actor, `api_key:${api.merchantA.apiKey.split("_")[2]}`);
    t.is(created!.source!.reference, job!.id);
    t.is(done.createdBy, created!.actor, "the job says who created it");
    // Another merchant cannot touch the upload.
    const other = api.client(BulkJobService, api.merchantB);
    t.is(ConnectError.from(await t.throwsAsync(other.getUpload({ uploadId: upload!.id }))).code, Code.NotFound);
  },
);

const reason = (e: ConnectError) => e.findDetails(ErrorInfoSchema)[0]?.reason;
const jobsNamed = async (fileName: string) =>
  (await bulk.listBulkJobs({ pageSize: 1000 })).jobs.filter((j) => j.options!.fileName === fileName);

test.serial(
  "the same request_id with another file or other options is REQUEST_ID_MISMATCH, and nothing of the new file is kept",
  async (t) => {
    const sku = `MM${suffix}`;
    const fileName = `mismatch-${suffix}.csv`;
    const body = (title: string) => new TextEncoder().encode(`sku,title,price,currency\n${sku},${title},1.00,EUR\n`);
    const first = (await bulk.uploadBulkFile(stream(csvOptions({ requestId: `mm-${suffix}`, fileName }), [body("First")]))).job!;
    t.is((await finalJob(first.id)).state, BulkJobState.SUCCEEDED);
    // The same file again under its id: the same job.
    const again = (await bulk.uploadBulkFile(stream(csvOptions({ requestId: `mm-${suffix}`, fileName }), [body("First")]))).job!;
    t.is(again.id, first.id);
    // Another file under the same id.
    const other = ConnectError.from(
      await t.throwsAsync(bulk.uploadBulkFile(stream(csvOptions({ requestId: `mm-${suffix}`, fileName }), [body("Second")]))),
    );
    t.is(other.code, Code.InvalidArgument);
    t.is(reason(other), "REQUEST_ID_MISMATCH");
    // The same file with other options under the same id.
    const options = ConnectError.from(
      await t.throwsAsync(bulk.uploadBulkFile(stream(csvOptions({ requestId: `mm-${suffix}`, fileName, dryRun: true }), [body("First")]))),
    );
    t.is(reason(options), "REQUEST_ID_MISMATCH");
    // Over resumable parts: CompleteUpload refuses, and the upload with its bytes is removed.
    const { upload } = await bulk.createUpload({ options: { format: BulkFileFormat.CSV, requestId: `mm-${suffix}`, fileName } });
    await bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: body("Third") });
    const parts = ConnectError.from(
      await t.throwsAsync(bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(body("Third").length) })),
    );
    t.is(reason(parts), "REQUEST_ID_MISMATCH");
    t.is(ConnectError.from(await t.throwsAsync(bulk.getUpload({ uploadId: upload!.id }))).code, Code.NotFound);
    // One job, and the product as the first file made it.
    t.deepEqual(
      (await jobsNamed(fileName)).map((j) => j.id),
      [first.id],
    );
    t.is((await catalog.getProduct({ sku })).product!.title, "First");
  },
);

test.serial(
  "a bad file is bound to its request_id with its content: the same file gets the same failed job, another one a mismatch",
  async (t) => {
    const fileName = `bad-${suffix}.csv`;
    const bad = new TextEncoder().encode(`sku,title,colour\nB${suffix},T,red\nB${suffix}-2,T,blue\n`);
    const first = (
      await bulk.uploadBulkFile(stream(csvOptions({ requestId: `bad-${suffix}`, fileName }), [bad.subarray(0, 10), bad.subarray(10)]))
    ).job!;
    t.is(first.state, BulkJobState.FAILED);
    t.is(first.fileSize, BigInt(bad.length), "the whole file was read");
    t.is((await bulk.uploadBulkFile(stream(csvOptions({ requestId: `bad-${suffix}`, fileName }), [bad]))).job!.id, first.id);
    const fixed = new TextEncoder().encode(`sku,title,price,currency\nB${suffix},T,1.00,EUR\n`);
    const e = ConnectError.from(
      await t.throwsAsync(bulk.uploadBulkFile(stream(csvOptions({ requestId: `bad-${suffix}`, fileName }), [fixed]))),
    );
    t.is(reason(e), "REQUEST_ID_MISMATCH");
  },
);

test.serial("a stream cut before its end leaves no job, and its request_id can be sent again", async (t) => {
  const fileName = `cut-${suffix}.csv`;
  const file = generateBulkFile({ rows: 2000, format: "csv", seed: 5, skuPrefix: `CUT${suffix}-` });
  const chunks = [...file.chunks];
  const requestId = `cut-${suffix}`;
  // A dropped connection, as a client crash or a network fault leaves it: half the file sent as gRPC frames
  // on a raw HTTP/2 stream, then the socket destroyed. (A client library that cancels a call may first
  // half-close the request, which is a complete file as far as any server can tell.)
  const frame = (msg: Req) => {
    const body = toBinary(UploadBulkFileRequestSchema, create(UploadBulkFileRequestSchema, msg));
    const out = Buffer.alloc(5 + body.length);
    out.writeUInt32BE(body.length, 1);
    out.set(body, 5);
    return out;
  };
  const session = http2.connect(api.url);
  const call = session.request({
    ":method": "POST",
    ":path": "/stockroom.bulk.v1.BulkJobService/UploadBulkFile",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${api.merchantA.apiKey}`,
  });
  call.on("error", () => {});
  call.write(frame({ payload: csvOptions({ requestId, fileName }) }));
  for (const chunk of chunks.slice(0, Math.floor(chunks.length / 2))) call.write(frame({ payload: { case: "chunk", value: chunk } }));
  await new Promise((r) => setTimeout(r, 300)); // the server stages what it got
  session.destroy();
  // The server notices the cut and discards the half-staged job.
  for (let i = 0; i < 100 && (await jobsNamed(fileName)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(await jobsNamed(fileName), [], "no job of the cut stream is left");
  const { job } = await bulk.uploadBulkFile(stream(csvOptions({ requestId, fileName }), chunks));
  t.is(job!.options!.requestId, requestId);
  t.is((await finalJob(job!.id)).counts!.applied, 2000n);
  t.deepEqual(
    (await jobsNamed(fileName)).map((j) => j.state),
    [BulkJobState.SUCCEEDED],
  );
});

/** ingestCsv stages a CSV through ingest itself (not the RPC), as an upload named fileName, in chunks of 200. */
function ingestCsv(fileName: string, limits: Partial<IngestLimits>, source: AsyncIterable<Uint8Array>, whole?: WholeFile) {
  const options = { format: "csv" as const, conflictPolicy: "overwrite" as const, dryRun: false, requestId: "", fileName };
  const deps = { db: api.api.db, nats: h.nats, queue: h.queue, limits: { ...DEFAULT_LIMITS, chunkSize: 200, ...limits } };
  return ingest(deps, api.merchantA.merchantId, options, source, whole);
}

test("the contract's 4 MiB per message: a larger chunk or part is refused, and nothing is staged for it", async (t) => {
  const { jobs: before } = await bulk.listBulkJobs({});
  const big = new Uint8Array(4 * 1024 * 1024 + 1024).fill(0x61);
  // Within the transport's cap (4 MiB + 64 KiB), over the contract's 4 MiB of data: the field is named.
  const chunkErr = ConnectError.from(await t.throwsAsync(bulk.uploadBulkFile(stream(csvOptions({ requestId: "too-big-chunk" }), [big]))));
  t.is(chunkErr.code, Code.InvalidArgument);
  t.regex(chunkErr.rawMessage, /chunk: must be at most 4194304 bytes/);
  const { upload } = await bulk.createUpload({ options: { format: BulkFileFormat.CSV } });
  const partErr = ConnectError.from(await t.throwsAsync(bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: big })));
  t.is(partErr.code, Code.InvalidArgument);
  // Past the transport's cap (5.6 MB: a 4 MiB part in JSON's base64) the message is not even read whole.
  const huge = new Uint8Array(6 * 1024 * 1024);
  const hugeErr = ConnectError.from(await t.throwsAsync(bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: huge })));
  t.is(hugeErr.code, Code.ResourceExhausted);
  t.is(Number((await bulk.getUpload({ uploadId: upload!.id })).upload!.committedSize), 0);
  const { jobs: after } = await bulk.listBulkJobs({});
  t.is(after.length, before.length, "no job was left behind");
});

test.serial("a file held in full applies its first chunks while the rest is still being staged, once", async (t) => {
  const file = generateBulkFile({ rows: 1000, format: "csv", seed: 5, skuPrefix: `OV${suffix}-` });
  const bytes = Buffer.concat([...file.chunks]);
  const half = bytes.indexOf(10, bytes.length >> 1) + 1;
  const whole = await readWholeFile([bytes.subarray(0, 7), bytes.subarray(7)], "csv");
  // Descriptions hold quoted newlines: the file has more lines than items, and its records are counted exactly.
  t.true(bytes.filter((b) => b === 10).length > 1001);
  t.deepEqual([whole.size, whole.itemsAtMost], [bytes.length, 1000]);
  const merchantId = api.merchantA.merchantId;
  /** The second half comes only once a chunk of the first was applied: staging must publish chunks as it goes. */
  async function* source() {
    yield bytes.subarray(0, half);
    await waitFor(
      "a chunk applied while the file is being staged",
      async () =>
        (await api.api.db
          .selectFrom("bulk_jobs")
          .select("job_id")
          .where("merchant_id", "=", merchantId)
          .where("file_name", "=", `overlap-${suffix}.csv`)
          .where("state", "=", "validating")
          .where("chunks_done", ">", 0)
          .executeTakeFirst()) ?? undefined,
      30_000,
    );
    yield bytes.subarray(half);
  }
  // A file of exactly the item limit still overlaps.
  const staged = await ingestCsv(`overlap-${suffix}.csv`, { maxItems: 1000 }, source(), whole);
  t.is(Number(staged.total_items), 1000);
  const done = await finalJob(staged.job_id);
  t.is(done.state, BulkJobState.SUCCEEDED);
  t.deepEqual([done.counts!.applied, done.counts!.invalid, done.chunksDone], [1000n, 0n, 5]);
  // The same content again, as resumable parts without a request_id: the duplicate is found before anything is staged.
  const { upload } = await bulk.createUpload({ options: { format: BulkFileFormat.CSV, fileName: `overlap-${suffix}.csv` } });
  await bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: bytes });
  const again = await bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(bytes.length) });
  t.is(again.job!.id, staged.job_id);
  const audit = await api.api.db
    .selectFrom("product_changes")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("merchant_id", "=", merchantId)
    .where("sku", "like", `OV${suffix}-%`)
    .executeTakeFirstOrThrow();
  t.is(Number(audit.n), 1000, "every product changed once");
});

test.serial(
  "resumable parts are stored byte for byte: every byte value, small parts (SQL text) and large ones (a prepared statement's binary value)",
  async (t) => {
    const merchantId = api.merchantA.merchantId;
    const options = { format: "csv" as const, conflictPolicy: "overwrite" as const, dryRun: false, requestId: "", fileName: "bytes.bin" };
    const upload = await createUpload(api.api.db, merchantId, options, null, 60_000);
    const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    // 256 bytes, then 64 KiB and 1 MiB (above insertRows' 16 KiB binary threshold), then 1 byte: all 256 values in each.
    const parts = [every, Buffer.concat(new Array(256).fill(every)), Buffer.concat(new Array(4096).fill(every)), Buffer.from([0])];
    let offset = 0;
    for (const part of parts) {
      // A Uint8Array view into a larger buffer, as a decoded request hands it over.
      const framed = Buffer.concat([Buffer.from("xx"), part]);
      const view = new Uint8Array(framed.buffer, framed.byteOffset + 2, part.length);
      offset = await appendPart(api.api.db, merchantId, upload.upload_id, offset, view);
    }
    const stored: Buffer[] = [];
    for await (const piece of readUpload(api.api.db, merchantId, upload.upload_id)) stored.push(Buffer.from(piece));
    t.true(Buffer.concat(stored).equals(Buffer.concat(parts)));
    // A retried part that overlaps is compared with the stored bytes, which it matches.
    t.is(await appendPart(api.api.db, merchantId, upload.upload_id, 256, parts[1]!), offset);
  },
);

test.serial("staging that stopped without an end (its process gone) is failed by the workers' sweep; what it applied stays", async (t) => {
  // What a process that died mid-file leaves: a job VALIDATING, some chunks staged and applied, no heartbeat any more.
  const merchantId = api.merchantA.merchantId;
  const { jobId } = await csvJob(api.api.db, merchantId, `stalled-${suffix}.csv`);
  const ref = { merchantId, jobId };
  async function* lines(): AsyncIterable<ParsedLine> {
    for (let i = 0; i < 500; i++)
      yield { line: i + 2, kind: "valid", item: { sku: `ST${suffix}-${i}`, title: `T ${i}`, priceMinor: 100, currency: "EUR" } };
  }
  await stageLines(api.api.db, ref, lines(), { chunkSize: 200, stagedVersions: false, maxFormat: CHUNK_FORMAT });
  await topUp(api.api.db, h.nats, h.queue, ref);
  await waitFor("the staged chunks to be applied", async () =>
    (await bulk.getBulkJob({ jobId })).job!.chunksDone === 3 ? true : undefined,
  );
  t.is((await bulk.getBulkJob({ jobId })).job!.state, BulkJobState.VALIDATING);

  // Within the stall time nothing happens; past it (no heartbeat since the job was made) the job fails, with the reason.
  t.is(await failStalledStaging(api.api.db, 60_000), 0);
  t.is(await failStalledStaging(api.api.db, 1_000, new Date(Date.now() + 5_000)), 1);
  const failed = (await bulk.getBulkJob({ jobId })).job!;
  t.is(failed.state, BulkJobState.FAILED);
  t.is(failed.failure, BulkJobFailure.STAGING_STOPPED, "not the file's fault: it can be completed or sent again");
  t.regex(failed.error, /^staging stopped: the process reading this file stopped before its end/);
  t.is(failed.counts!.applied, 500n);
  t.is(await failStalledStaging(api.api.db, 1_000, new Date(Date.now() + 5_000)), 0, "once");
  // It can be rolled back like any failed job.
  await bulk.rollbackBulkJob({ jobId });
  t.is((await finalJob(jobId)).state, BulkJobState.ROLLED_BACK);
});

test.serial(
  "a resumable upload whose job's staging stopped is completed again: its stored parts are staged anew, under its request_id",
  async (t) => {
    const requestId = `again-${suffix}`;
    const fileName = `again-${suffix}.csv`;
    const bytes = Buffer.concat([...generateBulkFile({ rows: 300, format: "csv", seed: 13, skuPrefix: `AG${suffix}-` }).chunks]);
    const { upload } = await bulk.createUpload({ options: { format: BulkFileFormat.CSV, requestId, fileName } });
    await bulk.appendUploadPart({ uploadId: upload!.id, offset: 0n, data: bytes });
    // What a completion whose process died left: the upload bound to a job that stays VALIDATING, holding the request_id.
    const merchantId = api.merchantA.merchantId;
    const stalled = await stalledJob(api.api.db, merchantId, fileName, requestId);
    await linkUploadJob(api.api.db, merchantId, upload!.id, stalled);
    const complete = () => bulk.completeUpload({ uploadId: upload!.id, totalSize: BigInt(bytes.length) });
    t.is((await complete()).job!.state, BulkJobState.VALIDATING, "while it may still be staged, it is the answer");

    t.is(await failStalledStaging(api.api.db, 1_000, new Date(Date.now() + 5_000)), 1);
    const failed = (await bulk.getBulkJob({ jobId: stalled })).job!;
    t.is(failed.state, BulkJobState.FAILED);
    t.is(failed.options!.requestId, "", "the request_id is released");
    const again = (await complete()).job!;
    t.not(again.id, stalled);
    t.is(again.options!.requestId, requestId);
    const done = await finalJob(again.id);
    t.is(done.state, BulkJobState.SUCCEEDED);
    t.is(done.failure, BulkJobFailure.UNSPECIFIED);
    t.is(done.counts!.applied, 300n);
    t.is((await complete()).job!.id, again.id, "the upload is bound to the job that took it");
  },
);

test.serial("an upload that is slow but alive keeps its job past the stall time: its heartbeat says so", async (t) => {
  const file = generateBulkFile({ rows: 600, format: "csv", seed: 9, skuPrefix: `SL${suffix}-` });
  const bytes = Buffer.concat([...file.chunks]);
  const half = bytes.indexOf(10, bytes.length >> 1) + 1;
  let swept = -1;
  async function* slowClient() {
    yield bytes.subarray(0, half);
    // The client pauses for three stall times; the sweep runs meanwhile.
    await new Promise((r) => setTimeout(r, 1_500));
    swept = await failStalledStaging(api.api.db, 500);
    yield bytes.subarray(half);
  }
  const staged = await ingestCsv(`slow-${suffix}.csv`, { stagingHeartbeatMs: 100 }, slowClient());
  t.is(swept, 0);
  const done = await finalJob(staged.job_id);
  t.is(done.state, BulkJobState.SUCCEEDED);
  t.is(done.counts!.applied, 600n);
});
