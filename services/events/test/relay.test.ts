/**
 * The outbox relay (services/events/src/relay.ts) against real MariaDB and
 * NATS, fed by real catalog RPCs (on search's test harness: the catalog API
 * on a database of its own). Each test has its own databases and stream.
 */
import test, { type ExecutionContext } from "ava";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { sql } from "kysely";
import type { StoredMsg } from "@nats-io/jetstream";
import { fromBinary } from "@bufbuild/protobuf";
import { ProductEventBatchSchema, ProductEventSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { ensureEvents, EVENT_HEADERS, PRODUCT_EVENT_BATCH } from "../src/event-stream.ts";
import { lastUnpublished, markPublished, publishBatch, publishOrder, pruneOutbox, readBatch, type OutboxRow } from "../src/relay-batch.ts";
import { onVitess, type TestMerchant, waitFor } from "@stockroom/common/testing";
import { forEachShard } from "@stockroom/common/db";
import { productInit, startSearchHarness, unpublished, writeInOneTransaction, type SearchHarness } from "@stockroom/search/testing";

// Spans make the catalog store a trace context with each outbox row, as in production.
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: new InMemorySpanExporter() })] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

/**
 * harnessTest runs a test that takes a database of its own (a harness): one
 * at a time on Vitess, where the file's six would otherwise hold half the
 * tier's keyspace pool at once, side by side on MariaDB.
 */
const harnessTest = onVitess ? test.serial : test;

async function harness(t: ExecutionContext, name: string): Promise<SearchHarness> {
  const h = await startSearchHarness(name);
  t.teardown(() => h.close());
  return h;
}

async function outboxRows(h: SearchHarness): Promise<(OutboxRow & { published_at: Date | null })[]> {
  return h.db.selectFrom("outbox_events").selectAll().orderBy("event_id").execute();
}

/** streamMessages reads every message of the stream in stream order. */
async function streamMessages(h: SearchHarness): Promise<StoredMsg[]> {
  const { state } = await h.nats.jsm.streams.info(h.events.stream);
  const out: StoredMsg[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const m = await h.nats.jsm.streams.getMessage(h.events.stream, { seq });
    if (m) out.push(m);
  }
  return out;
}

async function allPublished(h: SearchHarness): Promise<true | undefined> {
  return (await unpublished(h)) === 0 ? true : undefined;
}

/** writeHistory gives each SKU a create and `updates` price changes, SKUs in parallel, each SKU's changes in sequence. */
async function writeHistory(h: SearchHarness, merchant: TestMerchant, skus: string[], updates: number): Promise<void> {
  const catalog = h.catalog(merchant);
  await Promise.all(
    skus.map(async (sku) => {
      await catalog.createProduct({ product: productInit(sku) });
      for (let i = 1; i <= updates; i++) {
        await catalog.updateProduct({
          product: { sku, price: { currencyCode: "EUR", minorUnits: BigInt(2000 + i) } },
          updateMask: { paths: ["price"] },
        });
      }
    }),
  );
}

/** versionsByAggregate lists, per aggregate id, the versions in the order the stream holds them. */
function versionsByAggregate(messages: StoredMsg[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of messages) {
    const id = m.header.get(EVENT_HEADERS.aggregateId);
    out.set(id, [...(out.get(id) ?? []), Number(m.header.get(EVENT_HEADERS.aggregateVersion))]);
  }
  return out;
}

harnessTest(
  "catalog changes are published once each, in order, with the event id as Nats-Msg-Id, trace context and metadata",
  async (t) => {
    const h = await harness(t, "relay_basic");
    const merchant = h.api.merchantA;
    const catalog = h.catalog(merchant);
    await writeHistory(h, merchant, ["MUG-1", "MUG-2"], 2);
    await catalog.deleteProduct({ sku: "MUG-2" });
    const rows = await outboxRows(h);
    t.is(rows.length, 7);

    const relay = await h.startRelay();
    await waitFor("every row published", () => allPublished(h), 10_000);
    const messages = await streamMessages(h);
    t.deepEqual(
      messages.map((m) => m.header.get("Nats-Msg-Id")).sort(),
      rows.map((r) => r.event_id),
      "one message per row",
    );
    const versions = [...versionsByAggregate(messages).values()].sort((a, b) => a.length - b.length);
    t.deepEqual(
      versions,
      [
        [1, 2, 3],
        [1, 2, 3, 4],
      ],
      "each product's versions in order",
    );
    const last = messages.find((m) => m.header.get("Nats-Msg-Id") === rows.at(-1)!.event_id)!;
    t.is(last.subject, `${h.events.subjectPrefix}.catalog.${merchant.merchantId}.product.deleted`);
    t.is(last.header.get(EVENT_HEADERS.eventType), "product.deleted");
    t.is(last.header.get(EVENT_HEADERS.aggregateType), "product");
    t.is(last.header.get(EVENT_HEADERS.merchant), merchant.merchantId);
    t.is(last.header.get(EVENT_HEADERS.aggregateVersion), "4");
    t.deepEqual(Buffer.from(last.data), rows.at(-1)!.payload, "the payload is the outbox row's bytes");
    for (const m of messages) {
      const row = rows.find((r) => r.event_id === m.header.get("Nats-Msg-Id"))!;
      const traceId = JSON.parse(row.trace_context ?? "{}").traceparent?.split("-")[1];
      t.truthy(traceId, "the catalog stored a trace context");
      t.is(m.header.get("traceparent").split("-")[1], traceId, "the message continues the change's trace");
    }

    // Nothing is published twice: later rounds find nothing to do. Each publish reports its commit-to-ack time once.
    const observed: number[] = [];
    relay.onCommitToPublish((ms) => observed.push(ms));
    await catalog.adjustStock({ sku: "MUG-1", delta: 1 });
    await waitFor("the new row published", () => allPublished(h), 10_000);
    t.is((await streamMessages(h)).length, 8);
    const stats = relay.stats();
    t.like(stats, { leader: true, published: 8, duplicates: 0, failures: 0 });
    t.true(stats.commitToPublish.samples === 8 && stats.commitToPublish.p50Ms >= 0);
    t.is(observed.length, 1, "the one new event was observed once");
    t.true(observed[0]! >= 0 && observed[0]! < 10_000, `${observed[0]} ms`);
  },
);

harnessTest(
  "two relays at once: one leads, every event is stored exactly once, each product's versions in order, and the standby takes over",
  async (t) => {
    const h = await harness(t, "relay_two");
    const merchant = h.api.merchantA;
    const [a, b] = [await h.startRelay({ batchSize: 7 }), await h.startRelay({ batchSize: 7 })];
    // Per shard target: on Vitess each relay may lead some shards; never may two lead the same one.
    let bothLed = false;
    const watch = setInterval(() => (bothLed ||= [...a.stats().leading].some((shard) => b.stats().leading.includes(shard))), 1);
    t.teardown(() => clearInterval(watch));

    const skus = Array.from({ length: 12 }, (_, i) => `SKU-${i}`);
    const writing = writeHistory(h, merchant, skus, 8);
    await waitFor("a leader", async () => (a.stats().leader || b.stats().leader ? true : undefined));
    await waitFor("some events published", async () => (a.stats().published + b.stats().published > 20 ? true : undefined), 10_000);
    const [leader, standby] = a.stats().leader ? [a, b] : [b, a];
    await leader.stop(); // mid-stream: the standby must take over
    await writing;
    await waitFor("every row published", () => allPublished(h), 15_000);
    t.true(standby.stats().leader, "the standby leads now");
    t.true(standby.stats().published > 0, "and published the rest");
    t.false(bothLed, "never two leaders at once");

    const rows = await outboxRows(h);
    const messages = await streamMessages(h);
    t.is(rows.length, skus.length * 9);
    t.deepEqual(messages.map((m) => m.header.get("Nats-Msg-Id")).sort(), rows.map((r) => r.event_id).sort(), "each row exactly once");
    const versions = versionsByAggregate(messages);
    t.is(versions.size, skus.length);
    for (const list of versions.values()) t.deepEqual(list, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  },
);

harnessTest("a crash between publish and mark republishes; JetStream keeps one copy of each event", async (t) => {
  const h = await harness(t, "relay_crash");
  await writeHistory(h, h.api.merchantA, ["A", "B", "C"], 3);
  // The crashed relay: it made the stream, read and published a batch, then died before marking it.
  await ensureEvents(h.nats.jsm, h.events);
  const batch = await readBatch(h.db, 5);
  const first = await publishBatch(h.nats.js, h.events, publishOrder(batch));
  t.is(first.acked.length, 5);
  t.true((await allPublished(h)) === undefined, "nothing marked");

  const relay = await h.startRelay();
  await waitFor("every row published", () => allPublished(h), 10_000);
  const messages = await streamMessages(h);
  const rows = await outboxRows(h);
  t.is(messages.length, rows.length, "one message per row although 5 were published twice");
  t.is(relay.stats().duplicates, 5, "the republished ones were reported as duplicates");
  for (const list of versionsByAggregate(messages).values()) t.deepEqual(list, [1, 2, 3, 4]);
});

test("publish order repairs an aggregate's versions inside a batch whatever their event ids", (t) => {
  const row = (event_id: string, aggregate_id: string, aggregate_version: number) =>
    ({
      merchant_id: "M",
      event_id,
      aggregate_type: "product",
      aggregate_id,
      aggregate_version,
      event_type: "product.updated",
      payload: Buffer.alloc(0),
      trace_context: null,
      created_at: new Date(),
    }) as OutboxRow;
  // P's version 3 got a smaller id than version 2 (writers with skewed clocks).
  const ordered = publishOrder([row("1", "P", 1), row("2", "Q", 1), row("3", "P", 3), row("4", "P", 2), row("5", "Q", 2)]);
  t.deepEqual(
    ordered.map((r) => `${r.aggregate_id}${r.aggregate_version}`),
    ["P1", "Q1", "P2", "P3", "Q2"],
  );
});

// Pruning is a DELETE … ORDER BY … LIMIT across merchants: it runs per shard target (vtgate could not run it over
// several shards), as the relay runs it; the test's own updates name their merchant.
harnessTest("pruning deletes only rows published longer ago than the retention", async (t) => {
  const h = await harness(t, "relay_prune");
  const merchantId = h.api.merchantA.merchantId;
  const prune = async (retentionMs: number, batch: number) =>
    (await forEachShard(h.db, (shardDb) => pruneOutbox(shardDb, retentionMs, batch))).reduce((a, b) => a + b, 0);
  await writeHistory(h, h.api.merchantA, ["OLD", "RECENT"], 0);
  const [old, recent] = await outboxRows(h);
  await markPublished(h.db, [old!, recent!]);
  await sql`UPDATE outbox_events SET published_at = NOW(3) - INTERVAL 25 HOUR WHERE merchant_id = ${merchantId} AND event_id = ${old!.event_id}`.execute(
    h.db,
  );
  // An unpublished row, however old, is never pruned.
  await h.catalog(h.api.merchantA).createProduct({ product: productInit("UNPUBLISHED") });
  await sql`UPDATE outbox_events SET created_at = NOW(3) - INTERVAL 48 HOUR WHERE merchant_id = ${merchantId} AND published_at IS NULL`.execute(
    h.db,
  );

  t.is(await prune(24 * 3600_000, 1), 1, "one row, found with batches of one");
  const left = await outboxRows(h);
  t.deepEqual(left.map((r) => r.event_id).sort(), [recent!.event_id, left.find((r) => r.published_at === null)!.event_id].sort());

  // The relay prunes on its schedule too.
  await sql`UPDATE outbox_events SET published_at = NOW(3) - INTERVAL 25 HOUR WHERE merchant_id = ${merchantId} AND event_id = ${recent!.event_id}`.execute(
    h.db,
  );
  const relay = await h.startRelay({ pruneEveryMs: 50, retentionMs: 24 * 3600_000 });
  await waitFor("the relay's prune", async () => (relay.stats().pruned === 1 ? true : undefined));
  await waitFor("the last row published", () => allPublished(h));
  t.is((await outboxRows(h)).length, 1, "the row the relay just published stays");
});

harnessTest("a bulk-sized transaction's events go out as one batch message, ordered against the merchant's single events", async (t) => {
  const h = await harness(t, "relay_batches");
  const merchant = h.api.merchantA;
  const other = h.api.merchantB;
  const skus = Array.from({ length: 120 }, (_, i) => `B-${String(i).padStart(3, "0")}`);
  await writeInOneTransaction(h, merchant, skus);
  // Single changes after the batch: two of its products, and another merchant's product.
  const catalog = h.catalog(merchant);
  for (const sku of ["B-000", "B-119"]) {
    await catalog.updateProduct({ product: { sku, title: `${sku} renamed` }, updateMask: { paths: ["title"] } });
  }
  await h.catalog(other).createProduct({ product: productInit("O-1") });
  await writeInOneTransaction(h, merchant, skus.slice(0, 60), 1600);

  const rows = await outboxRows(h);
  const batches = rows.filter((r) => r.event_type === PRODUCT_EVENT_BATCH);
  t.deepEqual(
    batches.map((r) => r.event_count),
    [120, 60],
    "one row per transaction",
  );
  t.is(rows.length, 5);
  // A round takes events up to its size, and always its first row.
  t.deepEqual(
    (await readBatch(h.db, 50)).map((r) => r.event_id),
    [rows[0]!.event_id],
  );
  t.deepEqual(
    (await readBatch(h.db, 123)).map((r) => r.event_id),
    rows.slice(0, 4).map((r) => r.event_id),
  );
  // A bounded read (the VStream relay's catch-up) stops at its bound, whatever room is left.
  t.is(await lastUnpublished(h.db), rows.at(-1)!.event_id);
  t.deepEqual(
    (await readBatch(h.db, 500, rows[2]!.event_id)).map((r) => r.event_id),
    rows.slice(0, 3).map((r) => r.event_id),
  );

  await h.startRelay({ batchSize: 50 });
  await waitFor("every row published", () => allPublished(h), 10_000);
  const messages = await streamMessages(h);
  t.deepEqual(messages.map((m) => m.header.get("Nats-Msg-Id")).sort(), rows.map((r) => r.event_id).sort(), "each row once, as one message");
  // In event id order per merchant (on Vitess the two merchants' shards are relayed apart).
  const ofMerchant = messages.filter((m) => m.header.get(EVENT_HEADERS.merchant) === merchant.merchantId);
  t.deepEqual(
    ofMerchant.map((m) => m.header.get("Nats-Msg-Id")),
    rows.filter((r) => r.merchant_id === merchant.merchantId).map((r) => r.event_id),
  );
  const first = ofMerchant[0]!;
  t.true(first.subject.endsWith(`.${merchant.merchantId}.product.batch`), first.subject);
  t.is(first.header.get(EVENT_HEADERS.eventCount), "120");
  const events = fromBinary(ProductEventBatchSchema, first.data).events;
  t.deepEqual(
    events.map((e) => e.product?.sku),
    skus,
  );
  t.true(events.every((e) => e.product?.version === 1n && e.merchantId === merchant.merchantId));
  const changeIds = await h.db.selectFrom("product_changes").select("change_id").where("merchant_id", "=", merchant.merchantId).execute();
  t.true(
    events.every((e) => changeIds.some((c) => c.change_id === e.eventId)),
    "each event keeps its own id: its audit entry's",
  );
  // Per product, versions reach the stream in order across batch and single messages.
  const versions = new Map<string, number[]>();
  for (const m of messages) {
    const inside =
      m.header.get(EVENT_HEADERS.eventType) === PRODUCT_EVENT_BATCH
        ? fromBinary(ProductEventBatchSchema, m.data).events
        : [fromBinary(ProductEventSchema, m.data)];
    for (const e of inside) versions.set(e.product!.sku, [...(versions.get(e.product!.sku) ?? []), Number(e.product!.version)]);
  }
  t.deepEqual(versions.get("B-000"), [1, 2, 3]);
  t.deepEqual(versions.get("B-119"), [1, 2]);
  t.deepEqual(versions.get("B-059"), [1, 2]);
});

harnessTest(
  "a batch row is a barrier for its merchant: when it fails, the merchant's later rows wait, other merchants' go on",
  async (t) => {
    const h = await harness(t, "relay_barrier");
    await ensureEvents(h.nats.jsm, h.events);
    const merchant = h.api.merchantA;
    await writeHistory(h, merchant, ["S-1"], 1);
    await writeInOneTransaction(
      h,
      merchant,
      Array.from({ length: 60 }, (_, i) => `S-${i + 2}`),
    );
    await writeHistory(h, merchant, ["S-70"], 0);
    await writeHistory(h, h.api.merchantB, ["OTHER"], 0);
    const rows = publishOrder(await readBatch(h.db, 1000));
    t.deepEqual(
      rows.map((r) => r.event_count),
      [1, 1, 60, 1, 1],
    );
    // The batch row cannot be routed (an aggregate type without a domain), so its publish fails.
    const unroutable = rows.map((r) => (r.event_count > 1 ? { ...r, aggregate_type: "nowhere" } : r));
    const outcome = await publishBatch(h.nats.js, h.events, unroutable);
    t.truthy(outcome.error);
    t.deepEqual(
      outcome.acked.map((r) => r.event_id).sort(),
      [rows[0]!.event_id, rows[1]!.event_id, rows[4]!.event_id].sort(),
      "S-1's rows before it and the other merchant's row went out; S-70's, after it, did not",
    );
  },
);
