/**
 * A process stopping (its server's close()) ends open WatchBulkJob streams
 * at once, as it does WatchOrder's: a watch on a job still under way used
 * to hold the drain for its whole drainMs and end in "drain timed out;
 * closing connections" (found from outside: Ctrl-C on npm start with a
 * dashboard or SDK watching a job took 10 s). The SDK's watch reconnects.
 */
import test from "ava";
import { BulkJobState } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { catalogModule, type CatalogTables } from "@stockroom/catalog";
import { startTestApi } from "@stockroom/common/testing";
import { bulkModule } from "../src/module.ts";
import type { BulkTables } from "../src/store.ts";
import { csvJob } from "./csv-job.ts";

test("closing the server ends an open watch of a job under way at once, not after drainMs", async (t) => {
  const api = await startTestApi<CatalogTables & BulkTables>(
    "bulk_drain",
    (db, { draining }) => [catalogModule(db), bulkModule(db, { watchIntervalMs: 50, shutdown: draining })],
    { config: { drainMs: 5_000 } },
  );
  t.teardown(() => api.close().catch(() => {}));
  const { jobId } = await csvJob(api.api.db, api.merchantA.merchantId, "drain.csv");
  const seen: BulkJobState[] = [];
  let first!: () => void;
  const watching = new Promise<void>((resolve) => (first = resolve));
  const watch = (async () => {
    for await (const { job } of api.client(BulkJobService, api.merchantA).watchBulkJob({ jobId })) {
      seen.push(job!.state);
      first();
    }
  })();
  await watching;
  const started = performance.now();
  await api.api.server.close();
  const tookMs = performance.now() - started;
  await watch;
  t.true(tookMs < 2_000, `close took ${Math.round(tookMs)} ms`);
  t.is(seen.length, 1, "the job did not move; the stream ended without a final state");
  t.not(seen[0], BulkJobState.SUCCEEDED);
});
