/**
 * The server's staging of an upload stopped (its process restarted, or lost
 * the database, mid-file): the job holds the upload's request_id, VALIDATING,
 * until the workers fail it ("staging stopped: …"). uploadBulkFile waits
 * that out and completes the same upload again, which stages its stored
 * parts anew: the caller gets the job that took the file, not the failure.
 */
import test from "ava";
import type { Interceptor } from "@connectrpc/connect";
import { stalledJob } from "@stockroom/bulk/testing";
import { BulkJobFailure, BulkJobState } from "../src/index.ts";
import { startSdkHarness } from "./harness.ts";

// The worker fails a job 1.5 s after its last heartbeat; live ones beat every 200 ms.
const h = await startSdkHarness("staging", { stagingHeartbeatMs: 200 }, { stagingStallMs: 1_500 });
test.after.always(() => h.close());

test("uploadBulkFile completes the upload again when the server's staging of it stopped, and returns the job that took the file", async (t) => {
  const requestId = `stopped-${h.suffix}`;
  // An earlier attempt under this request_id died on the server mid-file.
  const stalled = await stalledJob(h.api.api.db, h.api.merchantA.merchantId, "stopped.csv", requestId);
  let completions = 0;
  const count: Interceptor = (next) => (req) => {
    if (req.method.name === "CompleteUpload") completions++;
    return next(req);
  };
  const c = h.client({ interceptors: [count] });
  const file = h.csv(2_000, "S");
  const job = await c.uploadBulkFile(file.path, { requestId, method: "parts" });
  t.not(job.id, stalled);
  t.is(job.options!.requestId, requestId);
  t.is(completions, 2, "answered with the stopped job first, completed again once the server had failed it");
  const done = await c.waitForBulkJob(job.id);
  t.is(done.state, BulkJobState.SUCCEEDED);
  t.is(done.counts!.applied, 2_000n);
  const first = (await c.bulk.getBulkJob({ jobId: stalled })).job!;
  t.is(first.state, BulkJobState.FAILED);
  t.is(first.failure, BulkJobFailure.STAGING_STOPPED);
  t.regex(first.error, /^staging stopped: /);
});
