import { spawn } from "node:child_process";
import { Readable } from "node:stream";
import path from "node:path";
import test, { type ExecutionContext } from "ava";
import { Code } from "@connectrpc/connect";
import {
  BulkFileFormat,
  BulkItemOutcome,
  BulkJobState,
  ConflictError,
  NotFoundError,
  PermissionError,
  StockroomError,
  ValidationError,
  type BulkJob,
  type ReportStream,
  type UploadProgress,
} from "../src/index.ts";
import { startSdkHarness } from "./harness.ts";

const h = await startSdkHarness("client");
test.after.always(() => h.close());

const TRANSPORTS = ["grpc", "connect", "grpc-web"] as const;
const ROWS = 50_000;

for (const transport of TRANSPORTS) {
  test(`${transport}: create, update, and a stale etag is a ConflictError carrying the current etag`, async (t) => {
    const c = h.client({ transport });
    const sku = `C-${transport}-${h.suffix}`;
    const { product } = await c.catalog.createProduct({
      product: { sku, title: "Mug", price: { currencyCode: "EUR", minorUnits: 1290n }, stock: 5 },
    });
    const first = product!.etag;
    const { product: updated } = await c.catalog.updateProduct({
      product: { sku, title: "Big mug", etag: first },
      updateMask: { paths: ["title"] },
    });
    const stale = await t.throwsAsync(
      c.catalog.updateProduct({ product: { sku, title: "Tiny mug", etag: first }, updateMask: { paths: ["title"] } }),
    );
    t.true(stale instanceof ConflictError, String(stale));
    const conflict = stale as ConflictError;
    t.is(conflict.code, Code.Aborted);
    t.is(conflict.reason, "ETAG_MISMATCH");
    t.is(conflict.currentEtag, updated!.etag);
    t.true(conflict.fromServer);
    t.is(conflict.cause.code, Code.Aborted, "the raw ConnectError is the cause");
    // Merging with the current etag succeeds.
    const { product: merged } = await c.catalog.updateProduct({
      product: { sku, title: "Tiny mug", etag: conflict.currentEtag },
      updateMask: { paths: ["title"] },
    });
    t.is(merged!.title, "Tiny mug");
  });

  test(`${transport}: bad input, a missing product and a bad key are typed errors`, async (t) => {
    const c = h.client({ transport });
    const invalid = await t.throwsAsync(
      c.catalog.createProduct({ product: { sku: "", title: "", price: { currencyCode: "XXX", minorUnits: -1n } } }),
    );
    t.true(invalid instanceof ValidationError, String(invalid));
    const fields = (invalid as ValidationError).fieldViolations.map((v) => v.field);
    t.true(fields.length >= 2, `every bad field at once: ${fields.join(", ")}`);
    t.true(fields.some((f) => f.includes("sku")));
    const missing = await t.throwsAsync(c.catalog.getProduct({ sku: `NOPE-${h.suffix}` }));
    t.true(missing instanceof NotFoundError, String(missing));
    t.is((missing as StockroomError).code, Code.NotFound);
    const stranger = h.client({ transport, apiKey: "srk_00000000000000000000000000_00000000000000000000000000_nope" });
    const denied = await t.throwsAsync(stranger.catalog.getProduct({ sku: "X" }));
    t.true(denied instanceof PermissionError, String(denied));
    t.true((denied as PermissionError).unauthenticated);
  });
}

// A 50k-row file over each transport, each from another kind of source: a
// path (client streaming), a Blob and a Node stream (resumable parts). The
// gRPC one is applied; to keep the suite short the other two are dry runs
// (validated, staged and reported, not applied), and every transport then
// watches the applying job to completion and downloads its report.
function checkProgress(t: ExecutionContext, events: UploadProgress[], size: number, knownSize: boolean) {
  t.true(events.length >= 3, `progress events: ${events.length}`);
  const sent = events.map((e) => e.bytesSent);
  t.deepEqual(
    sent,
    [...sent].sort((a, b) => a - b),
    "bytesSent only grows",
  );
  t.is(events.at(-1)!.bytesSent, size);
  t.is(events.at(-1)!.itemsValidated, ROWS);
  t.is(events[0]!.totalBytes, knownSize ? size : undefined);
}

async function reportLines(report: ReportStream, asWebStream: boolean): Promise<string[]> {
  let text = "";
  if (asWebStream) {
    const reader = report.readableStream().getReader();
    const decoder = new TextDecoder();
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true });
    text += decoder.decode();
  } else {
    text = await report.text();
  }
  return text.trimEnd().split("\r\n");
}

const uploads = new Map<string, Promise<BulkJob>>();
const applied = () => uploads.get("grpc")!;

for (const transport of TRANSPORTS) {
  test(`${transport}: a ${ROWS}-row CSV uploads with progress events`, async (t) => {
    const c = h.client({ transport });
    const file = h.csv(ROWS, `U${transport.replace("-", "")}`);
    const events: UploadProgress[] = [];
    const onProgress = (p: UploadProgress) => events.push(p);
    const started = performance.now();
    const upload =
      transport === "grpc"
        ? c.uploadBulkFile(file.path, { onProgress })
        : transport === "connect"
          ? c.uploadBulkFile(new Blob([file.bytes], { type: "text/csv" }), { onProgress, dryRun: true })
          : c.uploadBulkFile(Readable.from([file.bytes]), { format: "csv", onProgress, dryRun: true });
    uploads.set(transport, upload);
    const job = await upload;
    t.log(`${transport}: uploaded and staged in ${Math.round(performance.now() - started)} ms`);
    t.is(job.options!.format, BulkFileFormat.CSV, "CSV, inferred from the name or type where not given");
    checkProgress(t, events, file.bytes.length, transport !== "grpc-web");
    if (transport === "grpc") {
      t.true([BulkJobState.QUEUED, BulkJobState.RUNNING, BulkJobState.SUCCEEDED].includes(job.state), BulkJobState[job.state]);
      return;
    }
    // A dry run is final once staged: the watch yields that state and ends; the report names every line.
    const updates = [];
    for await (const u of c.watchBulkJob(job.id)) updates.push(u);
    t.deepEqual(
      updates.map((u) => u.job.state),
      [BulkJobState.SUCCEEDED],
    );
    t.is(updates[0]!.job.counts!.valid, BigInt(ROWS));
    t.is(updates[0]!.job.counts!.applied, 0n);
    const lines = await reportLines(c.downloadBulkJobReport(job.id), transport === "connect");
    t.is(lines.length, ROWS + 1);
  });

  test(`${transport}: the applying job is watched to completion and its report downloads`, async (t) => {
    const c = h.client({ transport });
    while (!uploads.has("grpc")) await new Promise((r) => setTimeout(r, 20));
    const job = await applied();
    const started = performance.now();
    const updates = [];
    for await (const u of c.watchBulkJob(job.id)) updates.push(u);
    t.log(`${transport}: ${updates.length} updates, final after ${Math.round(performance.now() - started)} ms`);
    const versions = updates.map((u) => u.job.version);
    t.deepEqual(
      versions,
      [...new Set(versions)].sort((a, b) => Number(a - b)),
      "each version once, in order",
    );
    const done = updates.at(-1)!.job;
    t.is(done.state, BulkJobState.SUCCEEDED);
    t.is(done.counts!.applied, BigInt(ROWS));
    t.is((await c.waitForBulkJob(job.id, { timeoutMs: 10_000 })).version, done.version, "waiting on a finished job returns it");
    const lines = await reportLines(c.downloadBulkJobReport(job.id), transport === "connect");
    t.is(lines[0], "line_number,sku,outcome,field,code,message");
    t.is(lines.length, ROWS + 1);
    t.true(
      lines.slice(1).every((l) => l.includes(",APPLIED,")),
      lines[1],
    );
    const invalidOnly = await reportLines(c.downloadBulkJobReport(job.id, { outcomes: [BulkItemOutcome.INVALID] }), false);
    t.is(invalidOnly.length, 1, "filtered: the header only");
  });
}

test("waitForBulkJob gives up at its timeout with DEADLINE_EXCEEDED", async (t) => {
  const c = h.client();
  const file = h.csv(3000, "W");
  const job = await c.uploadBulkFile(file.path);
  const started = performance.now();
  const e = await t.throwsAsync(c.waitForBulkJob(job.id, { timeoutMs: 1 }));
  t.true(e instanceof StockroomError, String(e));
  t.is((e as StockroomError).code, Code.DeadlineExceeded);
  t.true(performance.now() - started < 2000);
  const aborted = new AbortController();
  const waiting = c.waitForBulkJob(job.id, { signal: aborted.signal });
  aborted.abort(new Error("not needed any more"));
  await t.throwsAsync(waiting);
  t.is((await c.waitForBulkJob(job.id)).state, BulkJobState.SUCCEEDED);
});

test("the same requestId returns the same job, without a second upload", async (t) => {
  const c = h.client();
  const file = h.csv(2000, "R");
  const requestId = `same-${h.suffix}`;
  const first = await c.uploadBulkFile(file.path, { requestId });
  const again = await c.uploadBulkFile(new Blob([file.bytes]), { requestId, format: "csv" });
  const viaParts = await c.uploadBulkFile(file.path, { requestId, method: "parts" });
  t.is(again.id, first.id);
  t.is(viaParts.id, first.id);
  t.is((await c.waitForBulkJob(first.id)).counts!.applied, 2000n);
});

test("helpers and streams closed early leave no timer or call behind: the process exits at once", async (t) => {
  const c = h.client();
  const file = h.csv(500, "T");
  const job = await c.uploadBulkFile(file.path);
  await c.waitForBulkJob(job.id);
  const script = path.join(import.meta.dirname, "fixtures", "early-close.ts");
  for (const transport of ["grpc", "connect"]) {
    const started = performance.now();
    const child = spawn(process.execPath, [script, h.api.url, h.api.merchantA.apiKey, job.id, transport], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d));
    child.stderr.on("data", (d: Buffer) => (output += d));
    const code = await new Promise<number | null>((resolve) => {
      const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
      child.once("exit", (c) => (clearTimeout(kill), resolve(c)));
    });
    const ms = performance.now() - started;
    t.is(code, 0, output);
    t.regex(output, /done/);
    // Every call in the script had a 120 s timeout; a leaked timer would hold the process that long.
    t.true(ms < 10_000, `${transport}: the process took ${Math.round(ms)} ms to exit: ${output}`);
  }
});
