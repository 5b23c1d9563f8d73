import test from "ava";
import { createDatabase, ensureDatabase, migrateToLatest } from "@stockroom/common/db";
import { createMetrics } from "@stockroom/common/observe";
import { parsePrometheusText, sumOf, testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { registerOutboxMetrics, registerRelayMetrics } from "../src/metrics.ts";
import { eventsMigrations } from "../src/migrations.ts";
import type { EventTables } from "../src/schema.ts";

const url = testDatabaseUrl("events_metrics");
await ensureDatabase(url);
test.after.always(() => dropTestDatabase(url));

test.serial("the outbox and relay gauges read their sources when scraped", async (t) => {
  const db = createDatabase<EventTables>({ url, poolSize: 1 });
  t.teardown(() => db.destroy());
  await migrateToLatest(db, [eventsMigrations]);
  const metrics = createMetrics({ processMetrics: false });
  registerOutboxMetrics(metrics.registry, db);
  // Every module of a process registers the outbox: the series are added once.
  registerOutboxMetrics(metrics.registry, db);
  const relay = { leader: true, published: 5, duplicates: 1, failures: 0 };
  // What the relay (relay.ts) calls with each published event's commit-to-ack time.
  const listeners: ((ms: number) => void)[] = [];
  registerRelayMetrics(metrics.registry, { stats: () => relay, onCommitToPublish: (l) => listeners.push(l) });
  const read = async () => parsePrometheusText(await metrics.registry.metrics());

  // The outbox: an unpublished event 40 s old.
  const merchant = newUlid();
  const created = new Date(Date.now() - 40_000);
  await db
    .insertInto("outbox_events")
    .values({
      merchant_id: merchant,
      event_id: newUlid(created.getTime()),
      aggregate_type: "product",
      aggregate_id: newUlid(),
      aggregate_version: 1,
      event_type: "product.updated",
      payload: Buffer.from("x"),
      trace_context: null,
      created_at: created,
    })
    .execute();
  let s = await read();
  t.is(sumOf(s, "stockroom_outbox_backlog_events"), 1);
  const age = sumOf(s, "stockroom_outbox_oldest_age_seconds");
  t.true(age >= 39 && age < 120, `age ${age}`);

  // The relay's counters only ever add what its stats() gained since the last scrape.
  t.is(sumOf(s, "stockroom_outbox_relay_leader"), 1);
  t.is(sumOf(s, "stockroom_outbox_relay_published_total"), 5);
  relay.published = 8;
  s = await read();
  t.is(sumOf(s, "stockroom_outbox_relay_published_total"), 8);

  // Commit to publish is a histogram with buckets from 1 ms to 60 s: each event lands in its bucket, cumulatively.
  t.is(listeners.length, 1);
  for (const ms of [0.5, 12, 40, 40, 900, 45_000, 120_000]) listeners[0]!(ms);
  s = await read();
  const bucket = (le: string) => sumOf(s, "stockroom_outbox_relay_commit_to_publish_seconds_bucket", { le });
  t.is(bucket("0.001"), 1);
  t.is(bucket("0.025"), 2);
  t.is(bucket("0.05"), 4);
  t.is(bucket("1"), 5);
  t.is(bucket("60"), 6);
  t.is(bucket("+Inf"), 7);
  t.is(sumOf(s, "stockroom_outbox_relay_commit_to_publish_seconds_count"), 7);
  t.true(Math.abs(sumOf(s, "stockroom_outbox_relay_commit_to_publish_seconds_sum") - 165.9925) < 1e-9);
  t.false(
    s.some((x) => x.name === "stockroom_outbox_relay_commit_to_publish_seconds" && "quantile" in x.labels),
    "no quantile gauge any more",
  );
  const type = /# TYPE stockroom_outbox_relay_commit_to_publish_seconds (\w+)/.exec(await metrics.registry.metrics())?.[1];
  t.is(type, "histogram");
});
