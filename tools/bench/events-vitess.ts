/**
 * `npm run bench:events -- --vitess [mysql://root@127.0.0.1:33677]`: the
 * outbox relay on Vitess, polling (relay.ts, reading outbox_events through
 * vtgate) against VStream (relay-vstream.ts, following vtgate's VStream),
 * one after the other in one run against the same vtgate
 * (tools/vitess/vttestserver.sh; keyspace `stockroom`, shards -80 and 80-).
 * vtgate's gRPC address is BENCH_VTGATE_GRPC, by default the MySQL port - 2
 * (vttestserver's layout). The URL may also come from STOCKROOM_TEST_VITESS.
 *
 * Outbox rows are written through vtgate with appendOutbox, as the catalog
 * writes them (one transaction per event, 200 products of 20 merchants, so
 * both shards), without the catalog itself: what differs between the two
 * sources is only how committed rows reach the relay. Per source, with its
 * own event stream:
 *
 * 1. Steady load: BENCH_VITESS_RATE events/s (300) for BENCH_SECONDS (20),
 *    open loop, at most 64 transactions in flight, after 3 s of warm-up.
 *    Commit → published is read from the stream for every event of the
 *    phase (JetStream's stored time minus Stockroom-Event-Time, the time
 *    just before the commit), as `npm run bench:events` reads it.
 * 2. Backlog: the relay stopped, BENCH_VITESS_BACKLOG events (20,000) are
 *    committed (10 per transaction), then the relay starts again (VStream:
 *    from its saved position) and events/s is the backlog over the time
 *    from its start to the last event stored.
 *
 * Writes bench-results/events.json (mode "vitess").
 */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { DeliverPolicy } from "@nats-io/jetstream";
import { sql } from "kysely";
import { newUlid, readInt } from "@stockroom/common";
import { createDatabase, migrateToLatest } from "@stockroom/common/db";
import { connectNats } from "@stockroom/common/nats";
import { createLogger } from "@stockroom/common/observe";
import {
  appendOutbox,
  DEFAULT_EVENT_STREAM,
  DEFAULT_RELAY,
  EVENT_HEADERS,
  type EventStreamConfig,
  type EventTables,
  eventsMigrations,
  type OutboxEvent,
  type OutboxRelay,
  type RelayConfig,
  startRelay,
} from "@stockroom/events";
import { percentile, round, table, writeResults } from "./stats.ts";

const arg = process.argv.slice(2).find((a) => a.startsWith("mysql://"));
const BASE = arg ?? process.env["BENCH_VITESS"] ?? process.env["STOCKROOM_TEST_VITESS"] ?? "mysql://root@127.0.0.1:33677";
const GRPC = process.env["BENCH_VTGATE_GRPC"] ?? `${new URL(BASE).hostname}:${Number(new URL(BASE).port) - 2}`;
const RATE = readInt(process.env, "BENCH_VITESS_RATE", 300, 1, 10_000);
const SECONDS = readInt(process.env, "BENCH_SECONDS", 20, 1, 3600);
const BACKLOG = readInt(process.env, "BENCH_VITESS_BACKLOG", 20_000, 0, 1_000_000);
const WARMUP_SECONDS = 3;
const MAX_IN_FLIGHT = 64;
const MERCHANTS = 20;
const PRODUCTS = 200;
const KEYSPACE = "stockroom";
const log = createLogger("bench-events-vitess", "warn");

type Summary = { samples: number; p50Ms: number; p99Ms: number; maxMs: number };
function summary(values: number[]): Summary {
  const sorted = Float64Array.from(values).sort();
  return {
    samples: sorted.length,
    p50Ms: round(percentile([...sorted], 50), 1),
    p99Ms: round(percentile([...sorted], 99), 1),
    maxMs: round(sorted.at(-1) ?? Number.NaN, 1),
  };
}
const fmt = (v: number, digits = 1) => (Number.isFinite(v) ? v.toFixed(digits) : "-");

const db = createDatabase<EventTables>({ url: `${BASE}/${KEYSPACE}`, poolSize: MAX_IN_FLIGHT + 4 });
const nats = await connectNats({ servers: (process.env["NATS_URL"] ?? "nats://127.0.0.1:4222").split(","), name: "bench-events-vitess" });
const merchants = Array.from({ length: MERCHANTS }, () => newUlid());
const products = Array.from({ length: PRODUCTS }, (_, i) => ({ merchantId: merchants[i % MERCHANTS]!, productId: newUlid(), version: 0 }));
const streams: string[] = [];

function nextEvent(p: (typeof products)[number]): OutboxEvent {
  p.version++;
  return {
    merchantId: p.merchantId,
    eventId: newUlid(),
    aggregateType: "product",
    aggregateId: p.productId,
    aggregateVersion: p.version,
    eventType: "product.updated",
    payload: randomBytes(200), // about a ProductEvent's size
    createdAt: new Date(),
  };
}

/**
 * steadyLoad commits `rate` events/s for `seconds`, open loop; a product
 * busy with its previous event is skipped for the next free one, so each
 * product's versions commit in order.
 */
async function steadyLoad(rate: number, seconds: number): Promise<{ committed: number; achievedRate: number; failures: number }> {
  const busy = new Set<number>();
  let committed = 0;
  let failures = 0;
  let inFlight = 0;
  let cursor = 0;
  const t0 = performance.now();
  const total = rate * seconds;
  const running: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (inFlight >= MAX_IN_FLIGHT) continue;
    let index = -1;
    for (let k = 0; k < PRODUCTS; k++) {
      const c = (cursor + k) % PRODUCTS;
      if (!busy.has(c)) {
        index = c;
        break;
      }
    }
    cursor = (cursor + 1) % PRODUCTS;
    if (index < 0) continue;
    busy.add(index);
    inFlight++;
    running.push(
      db
        .transaction()
        .execute((trx) => appendOutbox(trx, [nextEvent(products[index]!)]))
        .then(
          () => void committed++,
          () => void failures++,
        )
        .finally(() => {
          busy.delete(index);
          inFlight--;
        }),
    );
  }
  await Promise.all(running);
  const s = (performance.now() - t0) / 1000;
  return { committed, achievedRate: committed / s, failures };
}

/**
 * backlog commits n events, 10 per transaction (ten products of one
 * merchant), 16 transactions at a time; each merchant belongs to one
 * writer, so each product's versions commit in order.
 */
async function backlog(n: number): Promise<number> {
  let left = n;
  const t0 = performance.now();
  const writers = 16;
  const byMerchant = merchants.map((m) => products.filter((p) => p.merchantId === m));
  const writer = async (w: number) => {
    const own = byMerchant.filter((_, m) => m % writers === w);
    for (let turn = 0; left > 0; turn++) {
      const count = Math.min(10, left);
      left -= count;
      const events = own[turn % own.length]!.slice(0, count).map((p) => nextEvent(p));
      await db.transaction().execute((trx) => appendOutbox(trx, events));
    }
  };
  await Promise.all(Array.from({ length: writers }, (_, w) => writer(w)));
  return (performance.now() - t0) / 1000;
}

async function streamInfo(stream: string) {
  return (await nats.jsm.streams.info(stream)).state;
}

/** latencies reads the messages stored after `after` through `through`: stored time − event time, and the last stored time. */
async function latencies(stream: string, after: number, through: number): Promise<{ ms: number[]; lastStoredMs: number }> {
  const ms: number[] = [];
  let lastStoredMs = 0;
  if (through <= after) return { ms, lastStoredMs };
  const consumer = await nats.js.consumers.get(stream, {
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: after + 1,
    headers_only: true,
  });
  const messages = await consumer.consume({ max_messages: 2000 });
  for await (const m of messages) {
    const at = m.headers?.get(EVENT_HEADERS.eventTime);
    const stored = m.info.timestampNanos / 1e6;
    if (at && merchants.includes(m.headers?.get(EVENT_HEADERS.merchant) ?? "")) ms.push(stored - Date.parse(at));
    lastStoredMs = Math.max(lastStoredMs, stored);
    if (m.seq >= through || m.info.pending === 0) break;
  }
  await messages.close();
  return { ms, lastStoredMs };
}

async function waitStored(stream: string, count: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while ((await streamInfo(stream)).messages < count) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

async function phase(source: RelayConfig["source"]) {
  const suffix = randomBytes(4).toString("hex");
  const events: EventStreamConfig = {
    ...DEFAULT_EVENT_STREAM,
    stream: `BENCH_VT_${source.toUpperCase()}_${suffix}`,
    subjectPrefix: `bench_vt_${suffix}`,
    maxAgeMs: 3600_000,
  };
  streams.push(events.stream);
  const config: RelayConfig = { ...DEFAULT_RELAY, source, vtgateGrpcAddr: GRPC, pruneEveryMs: 0 };
  const start = async (): Promise<OutboxRelay> => {
    const relay = await startRelay({ db, nats, events, config, log });
    const deadline = Date.now() + 30_000;
    while (!relay.stats().leader) {
      if (Date.now() > deadline) throw new Error(`${source} relay did not lead within 30 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return relay;
  };
  let relay = await start();
  // Warm-up (and, for VStream, the first start's catch-up of the table's unpublished rows).
  await steadyLoad(RATE, WARMUP_SECONDS);
  await new Promise((r) => setTimeout(r, 1_000));
  const before = (await streamInfo(events.stream)).last_seq;
  const load = await steadyLoad(RATE, SECONDS);
  const expected = before + load.committed;
  const drained = await waitStored(events.stream, expected, 60_000);
  const steady = await latencies(events.stream, before, (await streamInfo(events.stream)).last_seq);
  const relayStats = relay.stats();
  await relay.stop();

  const atStop = (await streamInfo(events.stream)).last_seq;
  const writeS = await backlog(BACKLOG);
  const t0 = Date.now();
  relay = await start();
  const backlogDrained = await waitStored(events.stream, atStop + BACKLOG, 300_000);
  const after = await latencies(events.stream, atStop, (await streamInfo(events.stream)).last_seq);
  const drainS = (after.lastStoredMs - t0) / 1000;
  const backlogStats = relay.stats();
  await relay.stop();
  return {
    source,
    steady: {
      askedRate: RATE,
      achievedRate: round(load.achievedRate, 1),
      committed: load.committed,
      writeFailures: load.failures,
      allPublished: drained,
      commitToPublish: summary(steady.ms),
      relayWindow: relayStats.commitToPublish,
      relayDuplicates: relayStats.duplicates,
    },
    backlog: {
      events: BACKLOG,
      writeSeconds: round(writeS, 2),
      allPublished: backlogDrained,
      drainSeconds: round(drainS, 2),
      eventsPerS: round(BACKLOG / drainS, 0),
      published: backlogStats.published,
      duplicates: backlogStats.duplicates,
    },
  };
}

try {
  console.log(
    `events bench on Vitess (${BASE}, vtgate gRPC ${GRPC}): per relay source, ${RATE} events/s for ${SECONDS} s, then a ${BACKLOG}-event backlog`,
  );
  await migrateToLatest(db, [eventsMigrations]);
  const shards = await sql<Record<string, string>>`SHOW VITESS_SHARDS`.execute(db);
  console.log(`shards: ${shards.rows.map((r) => Object.values(r)[0]).join(", ")}`);
  const results = [];
  for (const source of ["poll", "vstream"] as const) {
    console.log(`\n${source}…`);
    results.push(await phase(source));
  }
  console.log(
    `\n${table(
      ["source", "steady events/s", "commit → published p50 ms", "p99 ms", "max ms", "samples", "backlog events/s", "backlog drain s"],
      results.map((r) => [
        r.source,
        fmt(r.steady.achievedRate),
        fmt(r.steady.commitToPublish.p50Ms),
        fmt(r.steady.commitToPublish.p99Ms),
        fmt(r.steady.commitToPublish.maxMs),
        r.steady.commitToPublish.samples,
        fmt(r.backlog.eventsPerS, 0),
        fmt(r.backlog.drainSeconds, 2),
      ]),
    )}`,
  );
  const file = writeResults("events", {
    mode: "vitess",
    settings: { vtgate: BASE, grpc: GRPC, rate: RATE, seconds: SECONDS, backlog: BACKLOG, merchants: MERCHANTS, products: PRODUCTS },
    results,
  });
  console.log(`\nwrote ${path.relative(path.join(import.meta.dirname, "..", ".."), file)}`);
} catch (error) {
  console.error("events bench (vitess) failed:", error);
  process.exitCode = 1;
} finally {
  for (const s of streams) await nats.jsm.streams.delete(s).catch(() => {});
  await nats.close();
  await db.destroy();
}
