/**
 * Host slots (host-slots.ts): at most `slots` workers of a host apply at
 * once; a freed or abandoned slot passes to a standby; workers of another
 * host have slots of their own. Real NATS; this file's own KV buckets,
 * database and stream.
 */
import { randomBytes } from "node:crypto";
import test from "ava";
import type { KV } from "@nats-io/kv";
import { createMerchant } from "@stockroom/common/rpc";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import type { Logger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { testDatabaseUrl, waitFor, dropTestDatabase } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { acquireHostSlot, openSlotBucket, type HostSlot, type HostSlotOptions } from "../src/host-slots.ts";
import { hostSlotSettings, parseBulkConfig } from "../src/config.ts";
import type { BulkDb } from "../src/store.ts";
import { findJob } from "../src/jobs.ts";
import { DEFAULT_QUEUE, ensureChunkQueue, topUp, type QueueConfig } from "../src/queue.ts";
import { bulkMigrations } from "../src/store.ts";
import { stagedJob } from "./harness.ts";
import { startBulkWorker } from "../src/worker.ts";

const url = testDatabaseUrl("bulk_host_slots");
await ensureDatabase(url);
const db: BulkDb = createDatabase({ url, poolSize: 8 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const { merchantId } = await createMerchant(db, "Host slots merchant");
const nats = await connectNats({ servers: "127.0.0.1:4222", name: "bulk-host-slots-test" });
const suffix = randomBytes(4).toString("hex");
const buckets = new Set<string>();
const streams = new Set<string>();
test.after.always(async () => {
  for (const name of buckets) await nats.jsm.streams.delete(`KV_${name}`).catch(() => false);
  for (const name of streams) await nats.jsm.streams.delete(name).catch(() => false);
  await nats.close();
  await db.destroy();
  await dropTestDatabase(url);
});

const TTL_MS = 1500;

async function bucketFor(name: string): Promise<{ kv: KV; options: (host: string, holder: string, slots?: number) => HostSlotOptions }> {
  const bucket = `slots_${name}_${suffix}`;
  buckets.add(bucket);
  const kv = await openSlotBucket(nats, { bucket, ttlMs: TTL_MS });
  return { kv, options: (host, holder, slots = 2) => ({ bucket, host, slots, ttlMs: TTL_MS, holder }) };
}

const never = new AbortController().signal;
const holderOf = async (kv: KV, key: string) => (await kv.get(key))?.string() || undefined;

test("a host's slots go to its first workers; the next one waits until a slot is given back; another host has its own", async (t) => {
  const { kv, options } = await bucketFor("give");
  const a = await acquireHostSlot(kv, options("h1", "a"), never);
  const b = await acquireHostSlot(kv, options("h1", "b"), never);
  t.deepEqual([a.key, b.key].sort(), ["h1.0", "h1.1"]);
  let c: HostSlot | undefined;
  const waiting = acquireHostSlot(kv, options("h1", "c"), never).then((slot) => (c = slot));
  const other = await acquireHostSlot(kv, options("h2", "d"), never);
  t.is(other.key, "h2.0");
  // Held slots are renewed (every TTL/3), so c still waits after more than a time to live.
  await new Promise((r) => setTimeout(r, TTL_MS * 1.5));
  t.is(c, undefined);
  t.is(await holderOf(kv, a.key), "a");
  const freed = a.key;
  await a.release();
  const slot = await waiting;
  t.is(slot.key, freed);
  t.is(await holderOf(kv, freed), "c");
  await Promise.all([b.release(), slot.release(), other.release()]);
});

test("a worker that goes silent loses its slot after the time to live, and a standby takes it", async (t) => {
  const { kv, options } = await bucketFor("silent");
  // The silent holder has a connection of its own, closed without giving the slot back (as a crash would).
  const own = await connectNats({ servers: "127.0.0.1:4222", name: "bulk-host-slots-silent" });
  const silent = await acquireHostSlot(
    await openSlotBucket(own, { bucket: options("h", "x").bucket, ttlMs: TTL_MS }),
    options("h", "gone", 1),
    never,
  );
  const started = Date.now();
  const standby = acquireHostSlot(kv, options("h", "standby", 1), never);
  await own.close();
  await silent.lost; // its renewals fail
  const slot = await standby;
  const took = Date.now() - started;
  t.is(slot.key, "h.0");
  t.is(await holderOf(kv, "h.0"), "standby");
  t.true(took >= TTL_MS * 0.6 && took < TTL_MS * 3, `took ${took} ms`);
  await slot.release();
});

test("acquiring stops when its signal aborts", async (t) => {
  const { kv, options } = await bucketFor("abort");
  const held = await acquireHostSlot(kv, options("h", "a", 1), never);
  const stop = new AbortController();
  const waiting = acquireHostSlot(kv, options("h", "b", 1), stop.signal);
  stop.abort(new Error("stopping"));
  await t.throwsAsync(waiting, { message: "stopping" });
  await held.release();
});

test("the slots default to the host's CPUs; 0 turns them off; the host name is made a key token", (t) => {
  const c = parseBulkConfig({ BULK_WORKER_HOST: "node-1.dc:a" });
  t.true(c.workerSlotsPerHost >= 1);
  t.is(hostSlotSettings(c, "me")?.host, "node-1_dc_a");
  t.is(hostSlotSettings(c, "me")?.bucket, "BULK_CHUNKS_worker_slots");
  t.is(hostSlotSettings(parseBulkConfig({ BULK_WORKER_SLOTS_PER_HOST: "0" }), "me"), undefined);
});

/** A logger that keeps which chunks its worker applied. */
function applied(): Logger & { chunks: number } {
  const log = { chunks: 0, info: (msg: string) => void (msg === "chunk applied" && log.chunks++), warn() {}, error() {} };
  return log;
}

async function runJob(q: QueueConfig, prefix: string) {
  const jobId = await stagedJob(db, merchantId, prefix, 400, 50);
  await topUp(db, nats, q, { merchantId, jobId });
  return waitFor(
    "the job to end",
    async () => {
      const job = await findJob(db, merchantId, jobId);
      return job && ["succeeded", "partially_succeeded", "failed", "cancelled"].includes(job.state) ? job : undefined;
    },
    60_000,
  );
}

test("with one slot per host, of two workers one applies every chunk; stopped, its standby applies the next job", async (t) => {
  const { options } = await bucketFor("workers");
  const q: QueueConfig = {
    ...DEFAULT_QUEUE,
    stream: `BULK_SLOTS_${suffix}`,
    subjectPrefix: `t_${suffix}.slots.chunk`,
    durable: "workers",
    ackWaitMs: 10_000,
  };
  streams.add(q.stream);
  await ensureChunkQueue(nats.jsm, q);
  const logs = [applied(), applied()];
  const start = (i: number) =>
    startBulkWorker({ db, nats, queue: q, log: logs[i]!, concurrency: 2, reconcileEveryMs: 0, hostSlots: options("host", `w${i}`, 1) });
  const workers = [await start(0), await start(1)];
  t.teardown(() => Promise.all(workers.map((w) => w.stop())));

  const first = await runJob(q, "FIRST");
  t.is(first.state, "succeeded");
  t.is(Number(first.applied_items), 400);
  // A chunk's log line follows its commit, which may have ended the job.
  const total = () => logs[0]!.chunks + logs[1]!.chunks;
  await waitFor("every chunk's log line", async () => total() === 8 || undefined, 10_000);
  const active = logs.findIndex((l) => l.chunks > 0);
  t.is(logs[active]!.chunks, 8);
  t.is(logs[1 - active]!.chunks, 0, "the standby applied nothing");

  await workers[active]!.stop(); // gives its slot back
  const second = await runJob(q, "SECOND");
  t.is(second.state, "succeeded");
  await waitFor("every chunk's log line", async () => total() === 16 || undefined, 10_000);
  t.is(logs[1 - active]!.chunks, 8);
});
