/**
 * The outbox relay's VStream source (relay-vstream.ts) against real Vitess:
 * vtgate of tools/vitess/vttestserver.sh (keyspace `stockroom` in shards -80
 * and 80-) and NATS. Outbox rows are written through vtgate with
 * appendOutbox, one transaction per event, each product's versions in
 * sequence.
 *
 * Runs in npm test's Vitess tier (STOCKROOM_TEST_VITESS=mysql://root@127.0.0.1:<vtgate
 * MySQL port>, a keyspace of the pool from testDatabaseUrl); vtgate's gRPC
 * address is STOCKROOM_TEST_VTGATE_GRPC, by default the same host on the
 * MySQL port - 2 (vttestserver's layout). Without STOCKROOM_TEST_VITESS the
 * tests are skipped, and say so.
 *
 * The tests share the keyspace, so they run one at a time, each with its
 * own event stream (hence its own stored positions) and merchants, and
 * look only at their merchants' events.
 */
import test, { type ExecutionContext } from "ava";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { sql } from "kysely";
import { DeliverPolicy } from "@nats-io/jetstream";
import { newUlid } from "@stockroom/common";
import { createDatabase, migrateToLatest } from "@stockroom/common/db";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { createLogger } from "@stockroom/common/observe";
import { dropTestDatabase, testDatabaseUrl, waitFor } from "@stockroom/common/testing";
import { DEFAULT_EVENT_STREAM, EVENT_HEADERS, ensureEvents, type EventStreamConfig } from "../src/event-stream.ts";
import { eventsMigrations } from "../src/migrations.ts";
import { appendOutbox } from "../src/outbox.ts";
import { openPositionStore } from "../src/relay-positions.ts";
import { DEFAULT_RELAY, type OutboxRelay, type RelayConfig, startOutboxRelay } from "../src/relay.ts";
import { startVStreamRelay } from "../src/relay-vstream.ts";
import type { EventTables } from "../src/schema.ts";

const vitessUrl = process.env["STOCKROOM_TEST_VITESS"];
const grpcAddr =
  process.env["STOCKROOM_TEST_VTGATE_GRPC"] ?? (vitessUrl ? `${new URL(vitessUrl).hostname}:${Number(new URL(vitessUrl).port) - 2}` : "");
const SKIP_REASON =
  "skipped: STOCKROOM_TEST_VITESS is not set (mysql://root@127.0.0.1:<vtgate MySQL port> of tools/vitess/vttestserver.sh)";
const vtest = vitessUrl ? test.serial : test.serial.skip;
if (!vitessUrl) console.warn(`relay-vstream.test.ts: ${SKIP_REASON}`);
const title = (name: string) => (vitessUrl ? name : `${name} (${SKIP_REASON})`);

/** In npm test's Vitess tier this file's keyspace comes from the pool (testDatabaseUrl), 2 shards. */
const dbUrl = vitessUrl ? testDatabaseUrl("relay_vstream") : "";
const KEYSPACE = vitessUrl ? decodeURIComponent(new URL(dbUrl).pathname.slice(1)) : "stockroom";
if (vitessUrl) test.after.always(() => dropTestDatabase(dbUrl));
const relayMain = path.join(import.meta.dirname, "..", "src", "relay-main.ts");
const log = createLogger("relay-vstream-test", "warn");
const RELAY: RelayConfig = { ...DEFAULT_RELAY, source: "vstream", vtgateGrpcAddr: grpcAddr, pruneEveryMs: 0 };

interface Env {
  db: ReturnType<typeof createDatabase<EventTables>>;
  nats: NatsClient;
  events: EventStreamConfig;
  lockName: string;
}

async function setup(t: ExecutionContext, name: string): Promise<Env> {
  const db = createDatabase<EventTables>({ url: dbUrl, poolSize: 24 });
  await migrateToLatest(db, [eventsMigrations]);
  const nats = await connectNats({ servers: process.env["TEST_NATS_URL"] ?? "nats://127.0.0.1:4222", name: `test-${name}` });
  const suffix = randomBytes(4).toString("hex");
  const events: EventStreamConfig = {
    ...DEFAULT_EVENT_STREAM,
    stream: `TEST_VSTREAM_${name.toUpperCase()}_${suffix}`,
    subjectPrefix: `test_vstream_${name}_${suffix}`,
    maxAgeMs: 3600_000,
  };
  await ensureEvents(nats.jsm, events);
  t.teardown(async () => {
    await nats.jsm.streams.delete(events.stream).catch(() => {});
    await nats.close();
    await db.destroy();
  });
  return { db, nats, events, lockName: `outbox-relay-test:${suffix}` };
}

function startRelay(env: Env): Promise<OutboxRelay> {
  return startVStreamRelay({ db: env.db, nats: env.nats, events: env.events, config: RELAY, log, lockName: env.lockName });
}

interface Product {
  merchantId: string;
  productId: string;
  version: number;
}

/** newProducts makes `perMerchant` products for each of `merchants` new merchants (ULIDs: spread over both shards). */
function newProducts(merchants: number, perMerchant: number): Product[] {
  return Array.from({ length: merchants }, () => newUlid()).flatMap((merchantId) =>
    Array.from({ length: perMerchant }, () => ({ merchantId, productId: newUlid(), version: 0 })),
  );
}

/** writeVersions commits `versions` more events per product, one transaction each, products `inFlight` at a time, each product's in sequence. */
async function writeVersions(env: Env, products: Product[], versions: number, inFlight = 16, onEvent?: () => void): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < products.length; i = next++) {
      const p = products[i]!;
      for (let v = 0; v < versions; v++) {
        p.version++;
        await env.db.transaction().execute((trx) =>
          appendOutbox(trx, [
            {
              merchantId: p.merchantId,
              eventId: newUlid(),
              aggregateType: "product",
              aggregateId: p.productId,
              aggregateVersion: p.version,
              eventType: "product.updated",
              payload: new TextEncoder().encode(`${p.productId}@${p.version}`),
              createdAt: new Date(),
            },
          ]),
        );
        onEvent?.();
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}

interface StreamEvent {
  subject: string;
  id: string;
  merchant: string;
  aggregate: string;
  version: number;
  payload: string;
}

/** readStream reads every message of the stream in stream order. */
async function readStream(env: Env): Promise<StreamEvent[]> {
  const { state } = await env.nats.jsm.streams.info(env.events.stream);
  const out: StreamEvent[] = [];
  if (state.messages === 0) return out;
  const consumer = await env.nats.js.consumers.get(env.events.stream, { deliver_policy: DeliverPolicy.All });
  const messages = await consumer.consume({ max_messages: 1000 });
  for await (const m of messages) {
    out.push({
      subject: m.subject,
      id: m.headers?.get("Nats-Msg-Id") ?? "",
      merchant: m.headers?.get(EVENT_HEADERS.merchant) ?? "",
      aggregate: m.headers?.get(EVENT_HEADERS.aggregateId) ?? "",
      version: Number(m.headers?.get(EVENT_HEADERS.aggregateVersion)),
      payload: new TextDecoder().decode(m.data),
    });
    if (m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

/** ours keeps the events of these products' merchants (the keyspace is shared; a relay publishes all of it). */
function ours(events: StreamEvent[], products: Product[]): StreamEvent[] {
  const merchants = new Set(products.map((p) => p.merchantId));
  return events.filter((e) => merchants.has(e.merchant));
}

async function streamCount(env: Env, products: Product[]): Promise<number> {
  return ours(await readStream(env), products).length;
}

/** checkStream: every product's every version exactly once, in version order, with its subject, id and payload. */
function checkStream(t: ExecutionContext, events: StreamEvent[], products: Product[], prefix: string): void {
  const ids = new Set(events.map((e) => e.id));
  t.is(ids.size, events.length, "no event id stored twice");
  const total = products.reduce((n, p) => n + p.version, 0);
  t.is(events.length, total, "one message per committed event");
  const seen = new Map<string, number[]>();
  for (const e of events) seen.set(e.aggregate, [...(seen.get(e.aggregate) ?? []), e.version]);
  const wrong: string[] = [];
  for (const p of products) {
    const versions = seen.get(p.productId) ?? [];
    const want = Array.from({ length: p.version }, (_, i) => i + 1);
    if (JSON.stringify(versions) !== JSON.stringify(want)) wrong.push(`${p.productId}: ${versions.join(",")}`);
  }
  t.deepEqual(wrong, [], "each product's versions in order, none missing");
  const bad = events.filter(
    (e) =>
      e.subject !== `${prefix}.catalog.${e.merchant}.product.updated` || e.payload !== `${e.aggregate}@${e.version}` || e.id.length !== 26,
  );
  t.deepEqual(bad.slice(0, 3), [], "subject, Nats-Msg-Id and payload as the polling relay publishes them");
}

/** shardsOf counts the products' merchants' rows per shard, read through shard-targeted connections. */
async function shardsOf(products: Product[]): Promise<Record<string, number>> {
  const merchants = [...new Set(products.map((p) => p.merchantId))];
  const out: Record<string, number> = {};
  for (const shard of ["-80", "80-"]) {
    const db = createDatabase<EventTables>({ url: `${vitessUrl}/${encodeURIComponent(`${KEYSPACE}:${shard}`)}`, poolSize: 1 });
    try {
      const { rows } = await sql<{
        n: number;
      }>`SELECT COUNT(*) AS n FROM outbox_events WHERE merchant_id IN (${sql.join(merchants)})`.execute(db);
      out[shard] = Number(rows[0]?.n ?? 0);
    } finally {
      await db.destroy();
    }
  }
  return out;
}

async function unpublishedOf(env: Env, products: Product[]): Promise<number> {
  const merchants = [...new Set(products.map((p) => p.merchantId))];
  const { rows } = await sql<{ n: number }>`
    SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL AND merchant_id IN (${sql.join(merchants)})`.execute(env.db);
  return Number(rows[0]?.n ?? 0);
}

vtest(
  title("committed events of both shards are published once each, in per-product order, marked published, position saved"),
  async (t) => {
    t.timeout(120_000);
    const env = await setup(t, "basic");
    // Events committed before the first start are published too (no saved position: the table's unpublished rows first).
    const early = newProducts(4, 2);
    await writeVersions(env, early, 3);
    const relay = await startRelay(env);
    t.teardown(() => relay.stop());
    await waitFor("leadership", async () => (relay.stats().leader ? true : undefined), 20_000);
    const products = [...early, ...newProducts(20, 5)];
    await writeVersions(env, products.slice(early.length), 10);
    await writeVersions(env, early, 2);
    const total = products.reduce((n, p) => n + p.version, 0);
    const perShard = await shardsOf(products);
    t.log("rows per shard", perShard, "stats", relay.stats());
    t.true((perShard["-80"] ?? 0) > 0 && (perShard["80-"] ?? 0) > 0, "the merchants' events live on both shards");
    await waitFor("every event in the stream", async () => ((await streamCount(env, products)) >= total ? true : undefined), 60_000);
    checkStream(t, ours(await readStream(env), products), products, env.events.subjectPrefix);
    await waitFor("every row marked published", async () => ((await unpublishedOf(env, products)) === 0 ? true : undefined), 20_000);
    const stats = relay.stats();
    // Only counted: the first start also publishes what earlier runs left unpublished in the shared keyspace, late by design.
    t.true(stats.commitToPublish.samples >= products.reduce((n, p) => n + p.version, 0) - early.length * 3, "latency recorded per event");
    const store = await openPositionStore(env.nats, {
      stream: RELAY.positionsStream,
      replicas: 1,
      eventStream: env.events.stream,
      keyspace: KEYSPACE,
    });
    const saved = await store.load();
    t.deepEqual(saved?.shards.map((s) => s.shard).sort(), ["-80", "80-"], "a position per shard");
    t.true(
      saved!.shards.every((s) => /^(MariaDB|MySQL56)\//.test(s.gtid)),
      `real GTID positions: ${JSON.stringify(saved)}`,
    );
  },
);

vtest(title("a restart after a clean stop republishes nothing, and resumes with what was committed while it was stopped"), async (t) => {
  t.timeout(120_000);
  const env = await setup(t, "restart");
  const products = newProducts(8, 4);
  let relay = await startRelay(env);
  await waitFor("leadership", async () => (relay.stats().leader ? true : undefined), 20_000);
  await writeVersions(env, products, 5);
  const first = products.reduce((n, p) => n + p.version, 0);
  await waitFor("every event in the stream", async () => ((await streamCount(env, products)) >= first ? true : undefined), 60_000);
  await relay.stop();
  const stored = (await env.nats.jsm.streams.info(env.events.stream)).state.messages;

  // Stopped: these are committed and must come with the restart, after the first ones.
  await writeVersions(env, products, 2);
  relay = await startRelay(env);
  t.teardown(() => relay.stop());
  const total = products.reduce((n, p) => n + p.version, 0);
  await waitFor("the events committed while stopped", async () => ((await streamCount(env, products)) >= total ? true : undefined), 60_000);
  await new Promise((resolve) => setTimeout(resolve, 1_500)); // anything republished would show by now
  const stats = relay.stats();
  t.is(stats.duplicates, 0, "the restarted relay published nothing JetStream already had");
  const after = (await env.nats.jsm.streams.info(env.events.stream)).state.messages;
  t.true(after - stored >= total - first, "the new events were stored");
  checkStream(t, ours(await readStream(env), products), products, env.events.subjectPrefix);
  t.log({ storedBeforeRestart: stored, after, restartedStats: { published: stats.published, duplicates: stats.duplicates } });
});

interface RelayProcess {
  child: ChildProcess;
  exited: Promise<void>;
  stderr: string[];
}

function startRelayProcess(env: Env): RelayProcess {
  const child = spawn(process.execPath, [relayMain], {
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      NATS_URL: process.env["TEST_NATS_URL"] ?? "nats://127.0.0.1:4222",
      RELAY_SOURCE: "vstream",
      VTGATE_GRPC_ADDR: grpcAddr,
      EVENTS_STREAM: env.events.stream,
      EVENTS_SUBJECT_PREFIX: env.events.subjectPrefix,
      EVENTS_MAX_AGE_MS: String(env.events.maxAgeMs),
      // Small batches: more positions saved, so a kill lands between publish and save more often.
      RELAY_BATCH_SIZE: "50",
      RELAY_PRUNE_EVERY_MS: "0",
      LOG_LEVEL: "info",
      METRICS_PORT: "off",
      HEALTH_PROBE_MS: "0",
      OTEL_EXPORTER_OTLP_ENDPOINT: "",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stdout!.on("data", (d: Buffer) => stderr.push(d.toString()));
  child.stderr!.on("data", (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, exited, stderr };
}

async function killRelay(relay: RelayProcess): Promise<void> {
  if (relay.child.exitCode === null && relay.child.signalCode === null) relay.child.kill("SIGKILL");
  await relay.exited;
}

vtest(
  title("the relay process killed twice mid-stream and restarted resumes from its saved position: nothing lost, nothing stored twice"),
  async (t) => {
    t.timeout(240_000);
    const env = await setup(t, "crash");
    const products = newProducts(16, 10);
    const VERSIONS = 25; // 4,000 events
    const total = products.length * VERSIONS;
    const relays: RelayProcess[] = [];
    t.teardown(async () => {
      for (const r of relays) await killRelay(r);
    });
    relays.push(startRelayProcess(env));
    await waitFor(
      "the relay to lead",
      async () => (relays[0]!.stderr.join("").includes("outbox relay leads (vstream)") ? true : undefined),
      30_000,
    );
    let committed = 0;
    const kills: { committed: number; atStream: number; unpublished: number }[] = [];
    const killer = (async () => {
      for (const share of [0.3, 0.65]) {
        await waitFor(
          `${share * 100}% of the events in the stream`,
          async () => ((await streamCount(env, products)) >= share * total ? true : undefined),
          120_000,
        );
        await killRelay(relays.at(-1)!);
        const atCommit = committed;
        kills.push({ committed: atCommit, atStream: await streamCount(env, products), unpublished: await unpublishedOf(env, products) });
        relays.push(startRelayProcess(env));
      }
    })();
    killer.catch(() => {});
    await writeVersions(env, products, VERSIONS, 16, () => committed++);
    await killer;
    await waitFor("every event in the stream", async () => ((await streamCount(env, products)) >= total ? true : undefined), 120_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const logs = relays.map((r) => r.stderr.join(""));
    t.log("kills", kills);
    t.is(kills.length, 2);
    for (const text of logs.slice(1)) t.true(text.includes("vstream relay resumes"), "each restart resumed from a saved position");
    t.true(
      kills.every((k) => k.atStream < k.committed),
      "each kill left committed events unpublished",
    );
    checkStream(t, ours(await readStream(env), products), products, env.events.subjectPrefix);
    t.is(relays.at(-1)!.child.exitCode, null, `the last relay still runs: ${logs.at(-1)!.slice(-2000)}`);
  },
);

vtest(
  title("a VStream relay and a polling relay never lead a shard at once: the VStream relay waits for every shard's lock"),
  async (t) => {
    t.timeout(60_000);
    const env = await setup(t, "locks");
    const poll = await startOutboxRelay({ db: env.db, nats: env.nats, events: env.events, config: { ...RELAY, source: "poll" }, log });
    let pollStopped = false;
    t.teardown(() => (pollStopped ? undefined : poll.stop()));
    await waitFor("the polling relay to lead both shards", async () => (poll.stats().leading.length === 2 ? true : undefined), 20_000);
    const vstream = await startVStreamRelay({ db: env.db, nats: env.nats, events: env.events, config: RELAY, log });
    t.teardown(() => vstream.stop());
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    t.false(vstream.stats().leader, "the VStream relay waits while the polling relay holds the shard locks");
    await poll.stop();
    pollStopped = true;
    await waitFor("the VStream relay to lead", async () => (vstream.stats().leader ? true : undefined), 20_000);
    t.deepEqual([...vstream.stats().leading].sort(), [`${KEYSPACE}/-80`, `${KEYSPACE}/80-`]);
  },
);
