/**
 * `npm run bench:events` (alias `bench:relay`): change propagation from the
 * catalog to the event stream and the search projection.
 *
 * Processes, as Nomad runs them: the bulk API (services/bulk/src/main.ts)
 * and the catalog API (services/catalog/src/main.ts) on one fresh database,
 * BENCH_WORKERS bulk worker processes (2); the outbox relay and the search
 * projector run in this process (as `npm start` runs them), a fresh pair per
 * phase so each phase's statistics are its own.
 *
 * 1. Steady load: UpdateProduct at BENCH_RATE calls/s (500) for
 *    BENCH_SECONDS (20) over 200 products, open loop (calls start on
 *    schedule whether or not earlier ones returned) but at most
 *    BENCH_MAX_IN_FLIGHT (512) at once, after 3 s of warm-up. If the
 *    machine cannot sustain the rate, the achieved rate is reported.
 * 2. Bulk: a job of BENCH_BULK_ROWS (500,000) generated items (all valid,
 *    new products) uploaded with UploadBulkFile and applied by the workers,
 *    while the relay and projector run. Every 500 ms the outbox backlog
 *    (unpublished rows, oldest age), the relay's published count and the
 *    projection's pending events are sampled; the job's end is its final
 *    state as WatchBulkJob reports it (polled every 250 ms), and the drain
 *    time is from then until the outbox has no unpublished row.
 *
 * Latencies: commit → published is read from the stream itself for every
 * event of a phase (JetStream's stored timestamp minus the event's
 * Stockroom-Event-Time, the change's time just before its commit);
 * commit → in search is the projector's window (its last 4,096 events);
 * response → found in search is timed by the client for every 10th update.
 *
 * Also per applied item of the bulk job: each table's growth (InnoDB's
 * statistics after ANALYZE TABLE, so page-granular) and the exact bytes of
 * the job's audit states and outbox payloads; and the CPU this process (the
 * relay and the projector, plus the sampler) spent per published event from
 * the upload's end to the projection's catch-up.
 *
 * Targets (issues 12 and 13): commit → search-visible p99 <= 1 s under
 * steady load; after the bulk job ends, the outbox drained within 10 s and
 * search caught up within 15 s. Exits non-zero on errors only, never on a
 * missed target.
 *
 * `--vitess [mysql://…]` instead compares the relay's two sources on
 * Vitess, polling and VStream, in one run (tools/bench/events-vitess.ts).
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import type { ChildProcess } from "node:child_process";
import { BulkJobState, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { parseBulkConfig, ensureChunkQueue, bulkMigrations } from "@stockroom/bulk";
import { catalogMigrations } from "@stockroom/catalog";
import { parseApiConfig, readInt } from "@stockroom/common";
import { createDatabase, dropDatabase, type CommonTables } from "@stockroom/common/db";
import {
  DEFAULT_EVENT_STREAM,
  EVENT_HEADERS,
  domainSubjects,
  type EventStreamConfig,
  DEFAULT_RELAY,
  startOutboxRelay,
  type OutboxRelay,
  type RelayConfig,
  type EventTables,
} from "@stockroom/events";
import { type LatencySummary, createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { sql, type Kysely } from "kysely";
import { testDatabaseUrl } from "@stockroom/common/testing";
import { DEFAULT_PROJECTOR, startSearchProjector, type SearchProjector, openSearchDatabase, createSearchWaiter } from "@stockroom/search";
import {
  API_NODE_ARGS,
  apiMain,
  FINAL_STATES,
  generateCsv,
  root,
  startWorker,
  stopChild,
  until,
  uploadRequests,
} from "./bulk-processes.ts";
import { startServerProcess, type ServerProcess } from "./server-process.ts";
import { maxOf, percentile, round, table, writeResults } from "./stats.ts";

// --vitess: polling against VStream on a vtgate (tools/bench/events-vitess.ts), instead of the run below.
if (process.argv.includes("--vitess")) {
  await import("./events-vitess.ts");
  process.exit();
}

const RATE = readInt(process.env, "BENCH_RATE", 500, 1, 10_000);
const SECONDS = readInt(process.env, "BENCH_SECONDS", 20, 1, 3600);
const MAX_IN_FLIGHT = readInt(process.env, "BENCH_MAX_IN_FLIGHT", 512, 1, 100_000);
const BULK_ROWS = readInt(process.env, "BENCH_BULK_ROWS", 500_000, 0, 10_000_000);
const WORKERS = readInt(process.env, "BENCH_WORKERS", 2, 1, 64);
/** How long to wait, after the relay drained, for the projection to catch up (it is reported, not a target). */
const PROJECTION_WAIT_S = readInt(process.env, "BENCH_PROJECTION_WAIT_S", 300, 0, 3600);
const PRODUCTS = 200;
const WARMUP_SECONDS = 3;
const SAMPLE_MS = 500;
const SEED = 42;
const TARGET_VISIBLE_P99_MS = 1000;
const TARGET_DRAIN_S = 10;
const TARGET_CAUGHT_UP_S = 15;
/** The tables whose size per item the bench reports: the data, and what the pipeline keeps beside it. */
const SIZED_TABLES = ["products", "product_changes", "outbox_events", "bulk_job_items"] as const;
const JOB_TIMEOUT_MS = 30 * 60_000;
/** The relay as in production, except that it counts its backlog every second for stats(). */
const RELAY: RelayConfig = DEFAULT_RELAY;
const log = createLogger("bench-events", "warn");

const suffix = randomBytes(4).toString("hex");
const events: EventStreamConfig = {
  ...DEFAULT_EVENT_STREAM,
  stream: `BENCH_EVENTS_${suffix}`,
  subjectPrefix: `bench_${suffix}`,
  maxAgeMs: 3600_000,
};
const apiConfig = parseApiConfig(process.env);
const queueEnv: Record<string, string> = {
  BULK_STREAM: `BENCH_EVBULK_${suffix}`,
  BULK_SUBJECT_PREFIX: `bench.evbulk.${suffix}`,
  BULK_DURABLE: `bench-evbulk-${suffix}`,
  ...(BULK_ROWS > parseBulkConfig(process.env).limits.maxItems ? { BULK_MAX_ITEMS: String(BULK_ROWS) } : {}),
};
const queue = parseBulkConfig({ ...process.env, ...queueEnv }).queue;

type Summary = { samples: number; p50Ms: number; p99Ms: number; maxMs: number };

function summary(values: number[]): Summary {
  const sorted = Float64Array.from(values).sort();
  return {
    samples: sorted.length,
    p50Ms: round(percentile([...sorted], 50), 1),
    p99Ms: round(percentile([...sorted], 99), 1),
    maxMs: round(sorted.at(-1) ?? NaN, 1),
  };
}

const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? "-" : v.toFixed(digits));
const int = (v: number) => Math.round(v).toLocaleString("en-US");
const latencyRow = (label: string, s: Summary | LatencySummary) => [label, s.samples, fmt(s.p50Ms), fmt(s.p99Ms), fmt(s.maxMs)];

const tmp = mkdtempSync(path.join(os.tmpdir(), "stockroom-bench-events-"));
const nats = await connectNats({ servers: apiConfig.natsUrl.split(","), name: "bench-events" });
const searchUrl = testDatabaseUrl("bench_events_search");
const searchDb = await openSearchDatabase({ url: searchUrl, poolSize: 20, migrate: true });
const stoppers: (() => Promise<void>)[] = [];
const workers: ChildProcess[] = [];
const warnings = new Map<string, number>();
const errors: string[] = [];
let bulkApi: ServerProcess | undefined;
let catalogApi: ServerProcess | undefined;
let db: ReturnType<typeof createDatabase<CommonTables & EventTables>> | undefined;
/** Every update sets a stock no update set before, so each one is a change (and an event). */
let stockValue = 0;

try {
  console.log(
    `events bench: ${RATE} updates/s for ${SECONDS} s over ${PRODUCTS} products, then a ${int(BULK_ROWS)}-item bulk job with ${WORKERS} worker process${WORKERS === 1 ? "" : "es"}; ` +
      `relay batch ${RELAY.batchSize}, poll ${RELAY.pollMs} ms; projector concurrency ${DEFAULT_PROJECTOR.concurrency}`,
  );
  await ensureChunkQueue(nats.jsm, queue);
  bulkApi = await startServerProcess({
    name: "bench_events",
    entrypoint: apiMain,
    migrations: [catalogMigrations, bulkMigrations],
    env: queueEnv,
    nodeArgs: API_NODE_ARGS,
  });
  catalogApi = await startServerProcess({
    name: "bench_events",
    entrypoint: path.join(root, "services", "catalog", "src", "main.ts"),
    migrations: [],
    shareWith: bulkApi,
  });
  db = createDatabase<CommonTables & EventTables>({ url: bulkApi.databaseUrl, poolSize: 4 });
  for (let i = 0; i < WORKERS; i++) {
    const w = startWorker({ ...queueEnv, DATABASE_URL: bulkApi.databaseUrl, NATS_URL: apiConfig.natsUrl }, warnings);
    w.once("exit", (code, signal) => {
      if (!w.killed) errors.push(`worker ${i + 1} exited on its own (code ${code}, signal ${signal})`);
    });
    workers.push(w);
  }
  await until(
    `${WORKERS} workers to pull`,
    async () => ((await nats.jsm.consumers.info(queue.stream, queue.durable)).num_waiting >= WORKERS ? true : undefined),
    30_000,
  );

  const steady = await steadyPhase();
  console.log(
    "\n" +
      table(
        ["steady load", "samples", "p50 ms", "p99 ms", "max ms"],
        [
          latencyRow("commit → published (stream, every event)", steady.commitToPublish),
          latencyRow("commit → published (relay window)", steady.relayWindow),
          latencyRow("commit → in search (projector window)", steady.commitToVisible),
          latencyRow("response → found in search (client, 1 in 10)", steady.responseToVisible),
          latencyRow("UpdateProduct call", steady.update),
        ],
      ),
  );
  console.log(
    `  asked ${RATE} updates/s, achieved ${fmt(steady.achievedRate)} updates/s (${steady.completed} of ${steady.scheduled} calls in ${fmt(steady.seconds, 2)} s, ` +
      `${steady.failures} failed, at most ${steady.maxInFlight} in flight, ${steady.lateStarts} calls started > 100 ms late); relay ${fmt(steady.relayEventsPerS, 0)} events/s`,
  );

  const bulk = BULK_ROWS > 0 ? await bulkPhase() : undefined;
  if (bulk) {
    console.log(
      "\n" +
        table(
          ["bulk job", "value"],
          [
            ["job", `${bulk.state}, ${int(bulk.applied)} applied of ${int(BULK_ROWS)}`],
            ["upload + stage (s)", fmt(bulk.ingestS, 2)],
            ["upload start → job end (s)", fmt(bulk.jobS, 2)],
            ["events published (relay)", int(bulk.published)],
            ["relay events/s, first → last publish", int(bulk.relayEventsPerS)],
            ["relay events/s, best 1 s sample", int(bulk.peakEventsPerS)],
            ["events/s over upload start → job end", int(bulk.eventsPerSOverJob)],
            ["max outbox backlog (rows)", int(bulk.maxBacklog)],
            ["max oldest unpublished age (ms)", int(bulk.maxOldestAgeMs)],
            ["backlog at job end (rows)", int(bulk.backlogAtEnd)],
            ["job end → outbox empty (s)", fmt(bulk.drainS, 2)],
            [
              "job end → projection caught up (s)",
              bulk.projectionCaughtUpS === null
                ? `not within ${PROJECTION_WAIT_S} s (${int(bulk.projectionPendingAtGiveUp)} pending)`
                : fmt(bulk.projectionCaughtUpS, 2),
            ],
            ["projector events/s, mean while behind", int(bulk.projectorEventsPerS)],
            ["relay + projector process CPU per event (µs)", fmt(bulk.pipelineCpuUsPerEvent, 1)],
            ...SIZED_TABLES.map((t) => [`${t} bytes per item (table growth)`, fmt(bulk.storage.tableBytesPerItem[t] ?? NaN, 0)]),
            ["audit entries of the job", int(bulk.storage.auditEntries)],
            ["audit before/after bytes per item", fmt(bulk.storage.auditStateBytesPerItem, 0)],
            ["outbox rows of the job", int(bulk.storage.outboxRows)],
            ["outbox payload bytes per item", fmt(bulk.storage.outboxPayloadBytesPerItem, 0)],
          ],
        ),
    );
    console.log(
      "\n" +
        table(
          ["during the bulk job", "samples", "p50 ms", "p99 ms", "max ms"],
          [
            latencyRow("commit → published (stream, every event)", bulk.commitToPublish),
            latencyRow("commit → in search (projector window, last events)", bulk.commitToVisible),
          ],
        ),
    );
    console.log("\nbacklog over time (every 5th sample):");
    console.log(
      table(
        ["t s", "phase", "unpublished", "oldest age ms", "published", "search pending"],
        bulk.samples
          .filter((_, i) => i % 5 === 0)
          .map((s) => [fmt(s.t, 1), s.phase, int(s.backlog), int(s.oldestAgeMs), int(s.published), int(s.searchPending)]),
      ),
    );
  }

  const targets = [
    {
      target: `steady: commit → search-visible p99 <= ${TARGET_VISIBLE_P99_MS} ms`,
      actual: `${fmt(steady.commitToVisible.p99Ms)} ms at ${fmt(steady.achievedRate)} updates/s`,
      pass: steady.commitToVisible.p99Ms <= TARGET_VISIBLE_P99_MS,
    },
    {
      target: `steady: rate ${RATE} updates/s sustained`,
      actual: `${fmt(steady.achievedRate)} updates/s`,
      pass: steady.achievedRate >= RATE * 0.98,
    },
    ...(bulk
      ? [
          {
            target: `bulk ${int(BULK_ROWS)}: outbox drained <= ${TARGET_DRAIN_S} s after the job's end`,
            actual: `${fmt(bulk.drainS, 2)} s`,
            pass: bulk.drainS <= TARGET_DRAIN_S,
          },
          {
            target: `bulk ${int(BULK_ROWS)}: search caught up <= ${TARGET_CAUGHT_UP_S} s after the job's end`,
            actual: bulk.projectionCaughtUpS === null ? "not caught up" : `${fmt(bulk.projectionCaughtUpS, 2)} s`,
            pass: bulk.projectionCaughtUpS !== null && bulk.projectionCaughtUpS <= TARGET_CAUGHT_UP_S,
          },
        ]
      : []),
  ];
  console.log(
    `\n${table(
      ["target", "actual", "result"],
      targets.map((t) => [t.target, t.actual, t.pass ? "PASS" : "MISS"]),
    )}`,
  );
  if (warnings.size > 0) console.log(`worker warnings: ${[...warnings].map(([m, n]) => `${n}x "${m}"`).join("; ")}`);

  const file = writeResults("events", {
    settings: {
      rate: RATE,
      seconds: SECONDS,
      maxInFlight: MAX_IN_FLIGHT,
      products: PRODUCTS,
      bulkRows: BULK_ROWS,
      workers: WORKERS,
      relay: RELAY,
      projector: DEFAULT_PROJECTOR,
    },
    steady,
    bulk,
    targets,
    workerWarnings: Object.fromEntries(warnings),
    errors,
  });
  console.log(`\nwrote ${path.relative(root, file)}`);
  if (errors.length > 0) {
    console.error(`\nerrors:\n  ${errors.join("\n  ")}`);
    process.exitCode = 1;
  }
} catch (error) {
  console.error("events bench failed:", error, ...(errors.length > 0 ? ["\nalso:", errors] : []));
  process.exitCode = 1;
} finally {
  for (const stop of stoppers.reverse()) await stop().catch(() => {});
  for (const w of workers) await stopChild(w);
  await catalogApi?.stop();
  await bulkApi?.stop();
  for (const s of [events.stream, queue.stream]) await nats.jsm.streams.delete(s).catch(() => {});
  await nats.close();
  await db?.destroy();
  await searchDb.destroy();
  await dropDatabase(searchUrl);
  rmSync(tmp, { recursive: true, force: true });
}

/** startPipeline starts a relay and a projector, each with fresh statistics. */
async function startPipeline(): Promise<{ relay: OutboxRelay; projector: SearchProjector; stop(): Promise<void> }> {
  const relay = await startOutboxRelay({ db: db!, nats, events, config: RELAY, log });
  const projector = await startSearchProjector({ db: searchDb, nats, events, config: DEFAULT_PROJECTOR, log });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await projector.stop();
    await relay.stop();
  };
  stoppers.push(stop);
  return { relay, projector, stop };
}

async function lastSeq(): Promise<number> {
  return (await nats.jsm.streams.info(events.stream)).state.last_seq;
}

/** publishLatencies reads the catalog events stored after seq `after` up to `through`, headers only, and returns stored time − event time. */
async function publishLatencies(after: number, through: number): Promise<number[]> {
  const out: number[] = [];
  if (through <= after) return out;
  const consumer = await nats.js.consumers.get(events.stream, {
    filter_subjects: domainSubjects(events, "catalog"),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: after + 1,
    headers_only: true,
  });
  const messages = await consumer.consume({ max_messages: 2000 });
  for await (const m of messages) {
    const at = m.headers?.get(EVENT_HEADERS.eventTime);
    if (at) out.push(m.info.timestampNanos / 1e6 - Date.parse(at));
    if (m.seq >= through || m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

async function unpublished(): Promise<number> {
  return (await measureBacklog(db!)).rows;
}

async function waitApplied(projector: SearchProjector, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while ((await projector.lag()).pendingEvents > 0) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

async function steadyPhase() {
  const client = catalogApi!.client(CatalogService);
  const skus = Array.from({ length: PRODUCTS }, (_, i) => `EV-${String(i).padStart(4, "0")}`);
  // Warm-up: the products, then WARMUP_SECONDS of the load, through a relay and projector that are then replaced.
  const warm = await startPipeline();
  for (let i = 0; i < skus.length; i += 50) {
    await Promise.all(
      skus
        .slice(i, i + 50)
        .map((sku) =>
          client.createProduct({ product: { sku, title: `Bench ${sku}`, price: { currencyCode: "EUR", minorUnits: 1000n }, stock: 5 } }),
        ),
    );
  }
  await runLoad(skus, WARMUP_SECONDS);
  await until("the warm-up published", async () => ((await unpublished()) === 0 ? true : undefined), 120_000);
  await waitApplied(warm.projector, 120_000);
  await warm.stop();

  const from = await lastSeq();
  const { relay, projector, stop } = await startPipeline();
  const t0 = performance.now();
  const measured = await runLoad(skus, SECONDS);
  await until("the steady load published", async () => ((await unpublished()) === 0 ? true : undefined), 300_000);
  const publishedS = (performance.now() - t0) / 1000;
  if (!(await waitApplied(projector, 300_000))) errors.push("steady: the projection did not catch up within 300 s");
  const relayStats = relay.stats();
  const result = {
    commitToPublish: summary(await publishLatencies(from, await lastSeq())),
    relayWindow: relayStats.commitToPublish,
    commitToVisible: projector.stats().commitToVisible,
    relayEventsPerS: round(relayStats.published / publishedS, 1),
    ...measured,
  };
  await stop();
  return result;
}

/** runLoad updates the products' stock at RATE calls/s, open loop with at most MAX_IN_FLIGHT calls at once, timing every 10th one until search has it. */
async function runLoad(skus: string[], seconds: number) {
  const client = catalogApi!.client(CatalogService);
  const waiter = createSearchWaiter(searchDb);
  const updates: number[] = [];
  const visible: number[] = [];
  let failures = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let lateStarts = 0;
  let freed: (() => void) | undefined;
  const calls: Promise<void>[] = [];
  const total = RATE * seconds;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    while (inFlight >= MAX_IN_FLIGHT) await new Promise<void>((r) => (freed = r));
    if (performance.now() - due > 100) lateStarts++;
    const sku = skus[i % skus.length]!;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    calls.push(
      (async () => {
        const t0 = performance.now();
        let returned = false;
        const release = () => {
          if (returned) return;
          returned = true;
          inFlight--;
          freed?.();
        };
        try {
          const { product } = await client.updateProduct({ product: { sku, stock: ++stockValue }, updateMask: { paths: ["stock"] } });
          const t1 = performance.now();
          updates.push(t1 - t0);
          release();
          if (i % 10 === 0) {
            await waiter.waitFor(
              { merchantId: catalogApi!.merchantId, sku, productId: product!.id, version: Number(product!.version) },
              AbortSignal.timeout(60_000),
            );
            visible.push(performance.now() - t1);
          }
        } catch (error) {
          failures++;
          if (failures <= 3) errors.push(`update or its search wait failed: ${error instanceof Error ? error.message : String(error)}`);
        } finally {
          release();
        }
      })().catch(() => {}),
    );
  }
  const lastCallAt = performance.now();
  await Promise.all(calls);
  const seconds_ = (lastCallAt - start) / 1000 + 1 / RATE;
  return {
    responseToVisible: summary(visible),
    update: summary(updates),
    scheduled: total,
    completed: updates.length,
    failures,
    maxInFlight,
    lateStarts,
    seconds: round(seconds_, 2),
    // Calls started per second of the schedule: with the in-flight cap reached, starts fall behind the schedule.
    achievedRate: round(total / seconds_, 1),
  };
}

/** samplePublishedAt is the relay's published count at the last sample taken by time t (s). */
function samplePublishedAt(samples: Sample[], t: number): number {
  return samples.filter((s) => s.t <= t).at(-1)?.published ?? 0;
}

interface Sample {
  t: number;
  phase: "upload" | "apply" | "drain" | "projection";
  backlog: number;
  oldestAgeMs: number;
  published: number;
  searchPending: number;
}

async function bulkPhase() {
  const file = await generateCsv(tmp, BULK_ROWS, SEED);
  console.log(
    `\ngenerated ${path.basename(file.path)}: ${round(file.bytes / 1024 / 1024, 1)} MB in ${fmt(file.generateMs / 1000, 2)} s (not timed)`,
  );
  const from = await lastSeq();
  const bytesBefore = await tableBytes(db!);
  const { relay, projector, stop } = await startPipeline();
  const client = bulkApi!.client(BulkJobService);
  const samples: Sample[] = [];
  let phase: Sample["phase"] = "upload";
  const t0 = performance.now();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const next = performance.now() + SAMPLE_MS;
      try {
        const [backlog, lag] = await Promise.all([measureBacklog(db!), projector.lag()]);
        samples.push({
          t: round((performance.now() - t0) / 1000, 2),
          phase,
          backlog: backlog.rows,
          oldestAgeMs: backlog.oldestAgeMs,
          published: relay.stats().published,
          searchPending: lag.pendingEvents,
        });
      } catch (error) {
        errors.push(`sample failed: ${error instanceof Error ? error.message : String(error)}`);
      }
      await new Promise((r) => setTimeout(r, Math.max(0, next - performance.now())));
    }
  })();

  const { job: queued } = await client.uploadBulkFile(uploadRequests(file.path, `bench-events-${suffix}`));
  const t1 = performance.now();
  const cpuAtUpload = process.cpuUsage();
  const publishedAtUpload = relay.stats().published;
  phase = "apply";
  if (!queued || queued.state !== BulkJobState.QUEUED)
    throw new Error(`the upload ended in state ${queued ? BulkJobState[queued.state] : "none"}: ${queued?.error}`);
  let final: BulkJob | undefined;
  const deadline = new AbortController();
  const timer = setTimeout(
    () => deadline.abort(new Error(`job ${queued.id} did not end within ${JOB_TIMEOUT_MS / 60_000} minutes`)),
    JOB_TIMEOUT_MS,
  );
  try {
    for await (const { job } of client.watchBulkJob({ jobId: queued.id }, { signal: deadline.signal })) {
      if (job && FINAL_STATES.has(job.state)) {
        final = job;
        break;
      }
    }
  } finally {
    clearTimeout(timer);
  }
  const t2 = performance.now();
  phase = "drain";
  if (!final) throw new Error(`job ${queued.id}: the watch ended before a final state`);
  if (final.state !== BulkJobState.SUCCEEDED) errors.push(`bulk job ended ${BulkJobState[final.state]} (${final.error || "no error"})`);
  const backlogAtEnd = await unpublished();
  await until("the outbox to drain", async () => ((await unpublished()) === 0 ? true : undefined), 30 * 60_000);
  const t3 = performance.now();
  phase = "projection";
  const caughtUp = await waitApplied(projector, PROJECTION_WAIT_S * 1000);
  const t4 = performance.now();
  const cpu = process.cpuUsage(cpuAtUpload);
  const projectionPendingAtGiveUp = caughtUp ? 0 : (await projector.lag()).pendingEvents;
  sampling = false;
  await sampler;
  const storage = await storagePerItem(db!, bytesBefore, final.id, Number(final.counts?.applied ?? 0));
  const relayStats = relay.stats();
  const projectorStats = projector.stats();
  const commitToVisible = projectorStats.commitToVisible;
  await stop();
  const commitToPublish = summary(await publishLatencies(from, await lastSeq()));

  // Throughput between the first and the last sample that saw the published count move.
  const moving = samples.filter((s, i) => i > 0 && s.published > samples[i - 1]!.published);
  const first = moving[0];
  const last = moving.at(-1);
  let peak = 0;
  for (let i = 1; i < samples.length; i++) {
    const dt = samples[i]!.t - samples[i - 1]!.t;
    if (dt > 0) peak = Math.max(peak, (samples[i]!.published - samples[i - 1]!.published) / dt);
  }
  const applyS = (t2 - t0) / 1000;
  const projectedS = (t4 - t0) / 1000;
  return {
    jobId: final.id,
    state: BulkJobState[final.state]!,
    applied: Number(final.counts?.applied ?? 0),
    ingestS: round((t1 - t0) / 1000, 2),
    jobS: round(applyS, 2),
    published: relayStats.published,
    duplicates: relayStats.duplicates,
    failures: relayStats.failures,
    relayEventsPerS: first && last && last.t > first.t ? round((last.published - first.published) / (last.t - first.t), 0) : NaN,
    peakEventsPerS: round(peak, 0),
    eventsPerSOverJob: round(samplePublishedAt(samples, applyS) / applyS, 0),
    maxBacklog: maxOf(samples, (s) => s.backlog),
    maxOldestAgeMs: maxOf(samples, (s) => s.oldestAgeMs),
    backlogAtEnd,
    drainS: round((t3 - t2) / 1000, 2),
    projectionCaughtUpS: caughtUp ? round((t4 - t2) / 1000, 2) : null,
    projectionPendingAtGiveUp,
    projectorEventsPerS: round(projectorStats.applied / projectedS, 0),
    commitToPublish,
    relayWindow: relayStats.commitToPublish,
    commitToVisible,
    // This process runs the relay and the projector (and the sampler and the job's watch), from the upload's end to the catch-up.
    pipelineCpuUsPerEvent: round((cpu.user + cpu.system) / Math.max(1, relayStats.published - publishedAtUpload), 2),
    storage,
    samples,
  };
}

/** tableBytes is each sized table's data + index bytes as InnoDB's statistics have them, refreshed first. */
async function tableBytes(db: Kysely<CommonTables & EventTables>): Promise<Record<string, number>> {
  for (const table of SIZED_TABLES) await sql`ANALYZE TABLE ${sql.table(table)}`.execute(db);
  const { rows } = await sql<{ name: string; bytes: number | string }>`
    SELECT table_name AS name, data_length + index_length AS bytes FROM information_schema.tables
    WHERE table_schema = DATABASE() AND table_name IN (${sql.join([...SIZED_TABLES])})`.execute(db);
  return Object.fromEntries(rows.map((r) => [r.name, Number(r.bytes)]));
}

/**
 * storagePerItem is what the job added per applied item: each table's growth
 * (InnoDB's page counts: coarse, the 16 KiB pages allocated) and, exactly, the
 * bytes of the job's audit states and outbox payloads (published rows are
 * still there: pruning keeps them 24 h).
 */
async function storagePerItem(db: Kysely<CommonTables & EventTables>, before: Record<string, number>, jobId: string, items: number) {
  const after = await tableBytes(db);
  const per = (bytes: number) => round(bytes / Math.max(1, items), 1);
  const tables = Object.fromEntries(SIZED_TABLES.map((t) => [t, per((after[t] ?? 0) - (before[t] ?? 0))]));
  const audit = await sql<{ n: number | string; bytes: number | string | null }>`
    SELECT COUNT(*) AS n, SUM(COALESCE(LENGTH(before_state), 0) + COALESCE(LENGTH(after_state), 0)) AS bytes
    FROM product_changes WHERE source_ref = ${jobId}`.execute(db);
  const outbox = await sql<{ n: number | string; bytes: number | string | null }>`
    SELECT COUNT(*) AS n, SUM(LENGTH(payload)) AS bytes FROM outbox_events WHERE created_at >= (
      SELECT MIN(created_at) FROM product_changes WHERE source_ref = ${jobId})`.execute(db);
  return {
    tableBytesPerItem: tables,
    auditEntries: Number(audit.rows[0]?.n ?? 0),
    auditStateBytesPerItem: per(Number(audit.rows[0]?.bytes ?? 0)),
    outboxRows: Number(outbox.rows[0]?.n ?? 0),
    outboxPayloadBytesPerItem: per(Number(outbox.rows[0]?.bytes ?? 0)),
  };
}

interface Backlog {
  /** Rows not yet published. */
  rows: number;
  /** Age of the oldest of them (0 when there are none). */
  oldestAgeMs: number;
}

/** measureBacklog counts unpublished rows (an index range, uncapped: a benchmark wants the number) and ages the oldest. */
async function measureBacklog(db: Kysely<CommonTables & EventTables>): Promise<Backlog> {
  const count = await db
    .selectFrom("outbox_events")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("published_at", "is", null)
    .executeTakeFirstOrThrow();
  const oldest = await db
    .selectFrom("outbox_events")
    .select("created_at")
    .where("published_at", "is", null)
    .orderBy("event_id")
    .limit(1)
    .executeTakeFirst();
  return { rows: Number(count.n), oldestAgeMs: oldest ? Math.max(0, Date.now() - oldest.created_at.getTime()) : 0 };
}
