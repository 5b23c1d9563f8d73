import test from "ava";
import { catalogMigrations } from "@stockroom/catalog";
import { commonMigrations, createDatabase, ensureDatabase, inTransaction, migrateToLatest } from "@stockroom/common/db";
import { createMerchant } from "@stockroom/common/rpc";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { eventsMigrations } from "@stockroom/events";
import { applyChunk } from "../src/apply.ts";
import { CHUNK_FORMAT, canMove, FINAL_STATES, NEXT_STATES, statesInto, type JobState } from "../src/domain.ts";
import { findJob, moveJob } from "../src/jobs.ts";
import { finishStaging, stageLines } from "../src/stage.ts";
import { bulkMigrations, type BulkDb } from "../src/store.ts";
import { csvJob } from "./csv-job.ts";

const url = testDatabaseUrl("bulk_jobs");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 4 });
await migrateToLatest(db, [commonMigrations, eventsMigrations, catalogMigrations, bulkMigrations]);
const { merchantId } = await createMerchant(db, "Jobs merchant");
test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

const STATES = Object.keys(NEXT_STATES) as JobState[];

test("the state machine: a final state only leads to a rollback, a rolled-back job is done, and statesInto inverts NEXT_STATES", (t) => {
  for (const s of FINAL_STATES) t.deepEqual(NEXT_STATES[s], s === "rolled_back" ? [] : ["rolling_back"], s);
  for (const to of STATES) {
    for (const from of STATES) t.is(statesInto(to).includes(from), canMove(from, to), `${from} → ${to}`);
  }
  t.false(canMove("running", "queued"), "no way back");
  t.false(canMove("succeeded", "cancelled"), "a finished job cannot be cancelled");
});

async function newJob(): Promise<{ merchantId: string; jobId: string }> {
  const { jobId } = await csvJob(db, merchantId, "f.csv");
  return { merchantId, jobId };
}

async function outboxEvents(jobId: string): Promise<number> {
  const rows = await db
    .selectFrom("outbox_events")
    .select("event_id")
    .where("merchant_id", "=", merchantId)
    .where("aggregate_id", "=", jobId)
    .execute();
  return rows.length;
}

test("moveJob refuses a move the state machine does not allow and changes nothing", async (t) => {
  const ref = await newJob();
  t.false(await inTransaction(db, (trx) => moveJob(trx, ref, "running", new Date())), "receiving cannot jump to running");
  t.false(await inTransaction(db, (trx) => moveJob(trx, ref, "rolled_back", new Date())));
  const job = (await findJob(db, merchantId, ref.jobId))!;
  t.is(job.state, "receiving");
  t.is(Number(job.version), 1);
  t.is(await outboxEvents(ref.jobId), 0);
});

test("ending a job writes its bulk_job.finished event once, in the same transaction; a second end is refused", async (t) => {
  const ref = await newJob();
  t.true(await inTransaction(db, (trx) => moveJob(trx, ref, "cancelled", new Date())));
  t.false(await inTransaction(db, (trx) => moveJob(trx, ref, "failed", new Date(), { error: "late" })), "cancelled is final");
  const job = (await findJob(db, merchantId, ref.jobId))!;
  t.is(job.state, "cancelled");
  t.is(job.error, "");
  t.truthy(job.ended_at);
  t.is(await outboxEvents(ref.jobId), 1);
});

test("a job cancelled while its file was being staged stays cancelled when staging finishes", async (t) => {
  const ref = await newJob();
  async function* lines() {
    yield { line: 2, kind: "valid" as const, item: { sku: "STAGED-1", title: "One", priceMinor: 100, currency: "EUR" } };
    // The merchant cancels while the file is still being read.
    await inTransaction(db, (trx) => moveJob(trx, ref, "cancelled", new Date()));
    yield { line: 3, kind: "valid" as const, item: { sku: "STAGED-2", title: "Two", priceMinor: 100, currency: "EUR" } };
  }
  const staged = await stageLines(db, ref, lines(), { chunkSize: 1000, stagedVersions: false });
  t.is(await finishStaging(db, ref, staged, false), "cancelled");
  const job = (await findJob(db, merchantId, ref.jobId))!;
  t.is(job.state, "cancelled", "staging did not overwrite the cancel with QUEUED");
  t.is(await outboxEvents(ref.jobId), 1, "one finished event: the cancel's");
});

test("chunks applied while their job is staged only count; staging's end moves the job, to its final state if they are all done", async (t) => {
  for (const applyAll of [true, false]) {
    const ref = await newJob();
    const tag = `${ref.jobId.slice(-6)}-${applyAll}`;
    async function* lines() {
      yield { line: 2, kind: "valid" as const, item: { sku: `OVL-${tag}-1`, title: "One", priceMinor: 100, currency: "EUR" } };
      yield { line: 3, kind: "invalid" as const, sku: `OVL-${tag}-2`, errors: [{ field: "price", code: "BAD_NUMBER", message: "x" }] };
      // A new product without a title: invalid when its chunk applies.
      yield { line: 4, kind: "valid" as const, item: { sku: `OVL-${tag}-3`, stock: 1 } };
      yield { line: 5, kind: "valid" as const, item: { sku: `OVL-${tag}-4`, title: "Four", priceMinor: 100, currency: "EUR" } };
    }
    const applied: JobState[] = [];
    const staged = await stageLines(db, ref, lines(), {
      chunkSize: 1,
      stagedVersions: false,
      maxFormat: CHUNK_FORMAT,
      // As a worker would, while the rest of the file is staged (the last chunk waits when applyAll is false).
      onChunk: async (chunkNo) => {
        if (!applyAll && chunkNo === 2) return;
        applied.push((await applyChunk(db, { ...ref, chunkNo })).jobState!);
      },
    });
    t.deepEqual(applied, applyAll ? ["validating", "validating", "validating"] : ["validating", "validating"]);
    const state = await finishStaging(db, ref, staged, false);
    if (!applyAll) {
      t.is(state, "queued");
      t.is(await outboxEvents(ref.jobId), 0);
      t.is((await applyChunk(db, { ...ref, chunkNo: 2 })).jobState, "partially_succeeded");
    } else t.is(state, "partially_succeeded");
    const job = (await findJob(db, merchantId, ref.jobId))!;
    t.is(job.state, "partially_succeeded");
    t.deepEqual(
      [job.total_items, job.valid_items, job.invalid_items, job.applied_items, job.chunk_count, job.chunks_done].map(Number),
      [4, 3, 2, 2, 3, 3],
      "the staging counts and the chunks' counts add up (one line invalid at staging, one when applied)",
    );
    t.is(await outboxEvents(ref.jobId), 1, "one finished event");
  }
});
