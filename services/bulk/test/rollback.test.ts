import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { BulkItemOutcome, BulkJobState, ConflictPolicy } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { ChangeSourceKind } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { BadRequestSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { createApiKey } from "@stockroom/common/rpc";
import { startBulkHarness } from "./harness.ts";

const h = await startBulkHarness("rollback", { chunkSize: 20 });
test.after.always(() => h.close());
const csv = (text: string) => [new TextEncoder().encode(text)];

/** setUp makes 30 existing products, then a job that reprices them and creates 30 new ones. */
async function appliedJob(prefix: string) {
  for (let i = 0; i < 30; i++) {
    await h.catalog.createProduct({
      product: { sku: `${prefix}-OLD-${i}`, title: `Old ${i}`, price: { currencyCode: "EUR", minorUnits: 500n }, stock: 2 },
    });
  }
  const rows = [
    ...Array.from({ length: 30 }, (_, i) => `${prefix}-OLD-${i},Old ${i},9.99,EUR`),
    ...Array.from({ length: 30 }, (_, i) => `${prefix}-NEW-${i},New ${i},1.00,EUR`),
  ];
  const { job } = await h.upload({}, csv(`sku,title,price,currency\n${rows.join("\n")}\n`));
  const done = await h.finalJob(job!.id);
  return done;
}

test.serial("rollback restores changed products, removes created ones, and ends ROLLED_BACK", async (t) => {
  const job = await appliedJob(`A${h.suffix}`);
  t.is(job.state, BulkJobState.SUCCEEDED);
  t.is(job.counts!.applied, 60n);
  const { job: rolling } = await h.bulk.rollbackBulkJob({ jobId: job.id });
  t.true([BulkJobState.ROLLING_BACK, BulkJobState.ROLLED_BACK].includes(rolling!.state));
  const done = await h.finalJob(job.id);
  t.is(done.state, BulkJobState.ROLLED_BACK);
  t.deepEqual([done.counts!.rolledBack, done.counts!.applied], [60n, 0n]);
  const old = (await h.catalog.getProduct({ sku: `A${h.suffix}-OLD-7` })).product!;
  t.is(old.price!.minorUnits, 500n, "the price from before the job");
  t.is(old.version, 3n, "create, job, rollback");
  t.is(ConnectError.from(await t.throwsAsync(h.catalog.getProduct({ sku: `A${h.suffix}-NEW-7` }))).code, Code.NotFound);
  const { changes } = await h.catalog.listProductHistory({ sku: `A${h.suffix}-OLD-7` });
  t.is(changes[0]!.source!.kind, ChangeSourceKind.ROLLBACK);
  t.is(changes[0]!.source!.reference, job.id);
  // Who: the job's changes are its uploader's, the rollback's whoever asked for it; the source names the job.
  t.is(changes[0]!.actor, `api_key:${h.api.merchantA.apiKey.split("_")[2]}`);
  t.deepEqual([changes[1]!.source!.kind, changes[1]!.source!.reference], [ChangeSourceKind.BULK_JOB, job.id]);
  t.is(changes[1]!.actor, `api_key:${h.api.merchantA.apiKey.split("_")[2]}`);
  const { items } = await h.bulk.listBulkJobItems({ jobId: job.id, outcomes: [BulkItemOutcome.ROLLED_BACK] });
  t.is(items.length, 60);
  // A second request changes nothing.
  t.is((await h.bulk.rollbackBulkJob({ jobId: job.id })).job!.state, BulkJobState.ROLLED_BACK);
});

test.serial("a product edited after the job: SKIP keeps the edit and reports CONFLICT; OVERWRITE restores it", async (t) => {
  const skipJob = await appliedJob(`S${h.suffix}`);
  await h.catalog.updateProduct({ product: { sku: `S${h.suffix}-OLD-3`, title: "edited by hand" }, updateMask: { paths: ["title"] } });
  await h.bulk.rollbackBulkJob({ jobId: skipJob.id, conflictPolicy: ConflictPolicy.SKIP });
  const skipped = await h.finalJob(skipJob.id);
  t.is(skipped.state, BulkJobState.ROLLED_BACK);
  t.deepEqual([skipped.counts!.rolledBack, skipped.counts!.conflict], [59n, 1n]);
  const kept = (await h.catalog.getProduct({ sku: `S${h.suffix}-OLD-3` })).product!;
  t.is(kept.title, "edited by hand");
  t.is(kept.price!.minorUnits, 999n, "left entirely as it was");

  const overJob = await appliedJob(`O${h.suffix}`);
  await h.catalog.updateProduct({ product: { sku: `O${h.suffix}-OLD-3`, title: "edited by hand" }, updateMask: { paths: ["title"] } });
  await h.bulk.rollbackBulkJob({ jobId: overJob.id, conflictPolicy: ConflictPolicy.OVERWRITE });
  const over = await h.finalJob(overJob.id);
  t.is(over.counts!.rolledBack, 60n);
  const restored = (await h.catalog.getProduct({ sku: `O${h.suffix}-OLD-3` })).product!;
  t.is(restored.price!.minorUnits, 500n, "the job's change is reverted");
  t.is(restored.title, "edited by hand", "the later edit of a column the job did not change stays");
});

test.serial(
  "a rollback asked for with another of the merchant's keys is that key's in the audit trail, the job's changes the uploader's",
  async (t) => {
    const job = await appliedJob(`K${h.suffix}`);
    const { apiKey, keyId } = await createApiKey(h.api.api.db, h.api.merchantA.merchantId, "operations");
    const operations = h.api.client(BulkJobService, { merchantId: h.api.merchantA.merchantId, apiKey });
    await operations.rollbackBulkJob({ jobId: job.id });
    const rolledBack = await h.finalJob(job.id);
    t.is(rolledBack.state, BulkJobState.ROLLED_BACK);
    const uploader = `api_key:${h.api.merchantA.apiKey.split("_")[2]}`;
    t.deepEqual([rolledBack.createdBy, rolledBack.rollbackRequestedBy], [uploader, `api_key:${keyId}`], "the job says who did what");
    t.not(keyId, uploader.slice("api_key:".length));
    for (const sku of [`K${h.suffix}-OLD-4`, `K${h.suffix}-NEW-4`]) {
      const { changes } = await h.catalog.listProductHistory({ sku });
      const bySource = changes.map((c) => [c.source!.kind, c.actor]);
      t.deepEqual(
        bySource.filter(([kind]) => kind !== ChangeSourceKind.API),
        [
          [ChangeSourceKind.ROLLBACK, `api_key:${keyId}`],
          [ChangeSourceKind.BULK_JOB, uploader],
        ],
        sku,
      );
    }
  },
);

test.serial("a dry run, or another merchant's job, cannot be rolled back", async (t) => {
  const { job } = await h.upload({ dryRun: true }, csv(`sku,title,price,currency\nDRY${h.suffix},D,1.00,EUR\n`));
  t.is(ConnectError.from(await t.throwsAsync(h.bulk.rollbackBulkJob({ jobId: job!.id }))).code, Code.FailedPrecondition);
  const other = h.api.client((await import("@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js")).BulkJobService, h.api.merchantB);
  t.is(ConnectError.from(await t.throwsAsync(other.rollbackBulkJob({ jobId: job!.id }))).code, Code.NotFound);
});

test.serial("a rollback with an unknown conflict policy or an oversized request_id is INVALID_ARGUMENT and changes nothing", async (t) => {
  const job = await appliedJob(`V${h.suffix}`);
  const violations = (e: unknown) =>
    ConnectError.from(e)
      .findDetails(BadRequestSchema)
      .flatMap((d) => d.fieldViolations.map((v) => v.field));
  const badPolicy = ConnectError.from(await t.throwsAsync(h.bulk.rollbackBulkJob({ jobId: job.id, conflictPolicy: 9 as ConflictPolicy })));
  t.is(badPolicy.code, Code.InvalidArgument);
  t.deepEqual(violations(badPolicy), ["conflict_policy"]);
  t.regex(badPolicy.rawMessage, /unknown policy 9/);
  const longId = ConnectError.from(await t.throwsAsync(h.bulk.rollbackBulkJob({ jobId: job.id, requestId: "r".repeat(1_000_000) })));
  t.is(longId.code, Code.InvalidArgument);
  t.deepEqual(violations(longId), ["request_id"]);
  // 10 MB is past what any request message may be: refused before it is read whole.
  const hugeId = ConnectError.from(await t.throwsAsync(h.bulk.rollbackBulkJob({ jobId: job.id, requestId: "r".repeat(10_000_000) })));
  t.is(hugeId.code, Code.ResourceExhausted);
  const both = ConnectError.from(
    await t.throwsAsync(h.bulk.rollbackBulkJob({ jobId: "nope", conflictPolicy: -1 as ConflictPolicy, requestId: "r".repeat(129) })),
  );
  t.deepEqual(violations(both), ["job_id", "conflict_policy", "request_id"]);
  const after = (await h.bulk.getBulkJob({ jobId: job.id })).job!;
  t.is(after.state, BulkJobState.SUCCEEDED, "the job was not touched");
  t.is(after.counts!.rolledBack, 0n);
  t.is((await h.catalog.getProduct({ sku: `V${h.suffix}-OLD-7` })).product!.price!.minorUnits, 999n);
});
