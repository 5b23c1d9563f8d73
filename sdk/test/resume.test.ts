import test, { type ExecutionContext } from "ava";
import { BulkJobState, ValidationError, type BulkJob, type UploadProgress } from "../src/index.ts";
import { startSdkHarness } from "./harness.ts";
import { startDropProxy } from "@stockroom/common/testing";

// A loopback proxy between the SDK and the API cuts one connection mid-upload.
const h = await startSdkHarness("resume");
const proxy = await startDropProxy(h.api.url);
test.after.always(async () => {
  await proxy.close();
  await h.close();
});

const ROWS = 10_000;
const PART = 256 * 1024;

/** exactlyOnce checks that the upload made one job under the caller's own request_id, that it applied every line once, and that no other job (a FAILED one of the cut attempt) was left in the list. */
async function exactlyOnce(
  t: ExecutionContext,
  c: ReturnType<typeof h.client>,
  job: BulkJob,
  requestId: string,
  skuPrefix: string,
  jobsBefore: Set<string>,
) {
  t.is(job.options!.requestId, requestId, "the caller's request_id, not a derived one");
  const done = await c.waitForBulkJob(job.id, { timeoutMs: 120_000 });
  t.is(done.state, BulkJobState.SUCCEEDED);
  t.is(done.counts!.total, BigInt(ROWS), "each line read once");
  t.is(done.counts!.applied, BigInt(ROWS), "each line applied once");
  const { jobs } = await c.bulk.listBulkJobs({ pageSize: 1000 });
  t.deepEqual(
    jobs.filter((j) => !jobsBefore.has(j.id)).map((j) => `${j.id} ${BulkJobState[j.state]} ${j.error}`),
    [`${job.id} SUCCEEDED `],
    "the cut attempt left no job behind",
  );
  // Every product is at version 1 with one history entry: created once, never written again.
  let seen = 0;
  for await (const p of c.all.products({ pageSize: 1000 })) {
    if (!p.sku.startsWith(skuPrefix)) continue;
    seen++;
    t.is(p.version, 1n, p.sku);
  }
  t.is(seen, ROWS);
  const { changes } = await c.catalog.listProductHistory({ sku: `${skuPrefix}${String(ROWS).padStart(6, "0")}` });
  t.true(changes.length <= 1);
}

const jobIds = async (c: ReturnType<typeof h.client>) => new Set((await c.bulk.listBulkJobs({ pageSize: 1000 })).jobs.map((j) => j.id));

test.serial("gRPC, default method: a connection cut mid-upload resumes from the committed offset under the same request_id", async (t) => {
  const c = h.client({ baseUrl: proxy.url, transport: "grpc" });
  const file = h.csv(ROWS, "G");
  const requestId = `resume-grpc-${h.suffix}`;
  const before = await jobIds(c);
  const drops = proxy.drops();
  const dropped = proxy.dropOnceAfter(Math.floor(file.bytes.length / 2));
  const up = proxy.bytesUp();
  const events: UploadProgress[] = [];
  const job = await c.uploadBulkFile(file.path, { requestId, partSize: PART, onProgress: (p) => events.push(p) });
  await dropped;
  t.is(proxy.drops(), drops + 1);
  const through = proxy.bytesUp() - up;
  t.true(through < file.bytes.length + 2 * PART + 64 * 1024, `${through} bytes through the proxy for ${file.bytes.length}: resumed`);
  const sent = events.map((e) => e.bytesSent);
  t.deepEqual(
    sent,
    [...sent].sort((a, b) => a - b),
    "progress never went back",
  );
  await exactlyOnce(t, c, job, requestId, file.skuPrefix, before);
  // Asking again with the same requestId and the same file returns the same job.
  t.is((await c.uploadBulkFile(file.path, { requestId })).id, job.id);
});

test.serial(
  'method "stream": a stream cut mid-way leaves no FAILED job; the upload goes on over parts under the same request_id',
  async (t) => {
    const c = h.client({ baseUrl: proxy.url, transport: "grpc" });
    const file = h.csv(ROWS, "S");
    const requestId = `resume-stream-${h.suffix}`;
    const before = await jobIds(c);
    const drops = proxy.drops();
    const dropped = proxy.dropOnceAfter(Math.floor(file.bytes.length / 2));
    const events: UploadProgress[] = [];
    const job = await c.uploadBulkFile(file.path, { requestId, method: "stream", partSize: PART, onProgress: (p) => events.push(p) });
    await dropped;
    t.is(proxy.drops(), drops + 1);
    t.true(
      events.some((e, i) => i > 0 && e.bytesSent < events[i - 1]!.bytesSent),
      "the stream's bytes were sent again over parts",
    );
    // The server discards the cut stream's half-staged job once it notices the cut.
    for (let i = 0; i < 100 && (await jobIds(c)).size > before.size + 1; i++) await new Promise((r) => setTimeout(r, 100));
    await exactlyOnce(t, c, job, requestId, file.skuPrefix, before);
  },
);

test.serial("the same requestId with another file is a ValidationError REQUEST_ID_MISMATCH that names the request_id", async (t) => {
  const c = h.client({ baseUrl: proxy.url, transport: "grpc" });
  const requestId = `resume-mismatch-${h.suffix}`;
  const first = await c.uploadBulkFile(h.csv(10, "M1").path, { requestId });
  for (const method of ["parts", "stream"] as const) {
    const e = await t.throwsAsync(c.uploadBulkFile(h.csv(11, "M2").path, { requestId, method }), { instanceOf: ValidationError });
    t.is(e?.reason, "REQUEST_ID_MISMATCH", method);
    t.is(e?.requestId, requestId, method);
  }
  t.is((await c.uploadBulkFile(h.csv(10, "M1").path, { requestId })).id, first.id);
});

test.serial("resumable parts (Connect): a connection cut mid-part resumes from the committed offset", async (t) => {
  const c = h.client({ baseUrl: proxy.url, transport: "connect" });
  const file = h.csv(ROWS, "P");
  const requestId = `resume-parts-${h.suffix}`;
  const dropped = proxy.dropOnceAfter(Math.floor(file.bytes.length / 2));
  const before = proxy.bytesUp();
  const events: UploadProgress[] = [];
  const job = await c.uploadBulkFile(new Blob([file.bytes]), {
    format: "csv",
    requestId,
    partSize: PART,
    onProgress: (p) => events.push(p),
  });
  await dropped;
  const through = proxy.bytesUp() - before;
  t.is(job.options!.requestId, requestId, "one upload, one id: nothing restarted");
  const sent = events.map((e) => e.bytesSent);
  t.deepEqual(
    sent,
    [...sent].sort((a, b) => a - b),
    "progress never went back",
  );
  // The whole file once, plus the bytes lost in the cut part, that part again, and the calls' own bytes:
  // far less than a restart (twice the file).
  t.true(through < file.bytes.length + 2 * PART + 64 * 1024, `${through} bytes through the proxy for ${file.bytes.length}`);
  const done = await c.waitForBulkJob(job.id, { timeoutMs: 120_000 });
  t.is(done.counts!.applied, BigInt(ROWS));
  t.is(done.fileSize, BigInt(file.bytes.length));
  const { jobs } = await c.bulk.listBulkJobs({ pageSize: 1000 });
  t.is(jobs.filter((j) => j.options!.requestId.startsWith(requestId)).length, 1, "one job for the upload");
  let versions = 0;
  for (let pageToken = ""; ; ) {
    const page = await c.catalog.listProducts({ pageSize: 1000, pageToken });
    for (const p of page.products.filter((p) => p.sku.startsWith(file.skuPrefix))) versions += Number(p.version);
    if (!(pageToken = page.nextPageToken)) break;
  }
  t.is(versions, ROWS, "every product written once");
});

test.serial(
  'method "stream": a connection lost after the whole file was sent finds the staged job instead of making another',
  async (t) => {
    const c = h.client({ baseUrl: proxy.url, transport: "grpc" });
    const file = h.csv(ROWS / 4, "A");
    const requestId = `resume-ack-${h.suffix}`;
    // The answer carries the job, and with it the request_id: cut there, after the server staged the file.
    const dropped = proxy.dropOnceOnResponse(requestId);
    const job = await c.uploadBulkFile(file.path, { requestId, method: "stream" });
    await dropped;
    t.is(job.options!.requestId, requestId, "the same id was asked again and the staged job came back");
    const { jobs } = await c.bulk.listBulkJobs({ pageSize: 1000 });
    t.is(jobs.filter((j) => j.options!.requestId.startsWith(requestId)).length, 1, "one job");
    t.is((await c.waitForBulkJob(job.id)).counts!.applied, BigInt(ROWS / 4));
  },
);

test.serial("resumable parts: a lost CompleteUpload answer is asked again and returns the same job", async (t) => {
  const c = h.client({ baseUrl: proxy.url, transport: "grpc-web" });
  const file = h.csv(ROWS / 4, "B");
  const requestId = `resume-complete-${h.suffix}`;
  let dropped: Promise<void> | undefined;
  const job = await c.uploadBulkFile(file.path, {
    requestId,
    method: "parts",
    // Once every byte is acknowledged, the next answer naming the request_id is CompleteUpload's.
    onProgress: (p) =>
      void (p.bytesSent === file.bytes.length && p.itemsValidated === undefined && (dropped ??= proxy.dropOnceOnResponse(requestId))),
  });
  t.truthy(dropped);
  await dropped;
  t.is(job.options!.requestId, requestId);
  const { jobs } = await c.bulk.listBulkJobs({ pageSize: 1000 });
  t.is(jobs.filter((j) => j.options!.requestId.startsWith(requestId)).length, 1, "one job");
  t.is((await c.waitForBulkJob(job.id)).counts!.applied, BigInt(ROWS / 4));
});

test.serial("watchBulkJob reconnects after its connection is cut and still ends with the final state", async (t) => {
  const direct = h.client();
  const file = h.csv(ROWS / 2, "W");
  const job = await direct.uploadBulkFile(file.path);
  const c = h.client({ baseUrl: proxy.url, transport: "grpc" });
  const states: BulkJobState[] = [];
  const versions: bigint[] = [];
  let cut = false;
  for await (const { job: j } of c.watchBulkJob(job.id)) {
    states.push(j.state);
    versions.push(j.version);
    if (!cut) {
      cut = true;
      proxy.cutAll();
    }
  }
  t.true(cut);
  t.is(states.at(-1), BulkJobState.SUCCEEDED);
  t.deepEqual(
    versions,
    [...new Set(versions)].sort((a, b) => Number(a - b)),
    "no version twice after the reconnect",
  );
  t.is((await direct.bulk.getBulkJob({ jobId: job.id })).job!.version, versions.at(-1)!);
});
