/**
 * The outbox's and the relay's Prometheus series, added to a process's
 * registry (common's createMetrics makes it). Names, help and labels are as
 * they were when common declared them; the alert rules and the dashboard
 * read them (tools/observability/).
 */
import { Gauge, Histogram, type Registry } from "prom-client";
import { sql, type Kysely } from "kysely";
import type { EventTables } from "./schema.ts";
import { COLLECT_TIMEOUT_MS, counterOf, oncePerScrape, untraced } from "@stockroom/common/observe";
import { withTimeout } from "@stockroom/common";
import { forEachShard } from "@stockroom/common/db";

/** The outbox backlog is counted up to this many rows (an index range scan, so bounded). */
export const OUTBOX_COUNT_CAP = 100_000;

/** RelayStatsLike is what registerRelayMetrics reads of the relay's stats() (relay.ts). */
export interface RelayStatsLike {
  leader: boolean;
  published: number;
  duplicates: number;
  failures: number;
}

/** RelayLike is what registerRelayMetrics needs of an outbox relay (relay.ts's OutboxRelay). */
export interface RelayLike {
  stats(): RelayStatsLike;
  /** Calls the listener with each published event's commit-to-ack time, in milliseconds. */
  onCommitToPublish(listener: (ms: number) => void): unknown;
}

/**
 * Buckets (seconds) of stockroom_outbox_relay_commit_to_publish_seconds: from 1 ms (an idle relay polls every
 * RELAY_POLL_MS, 20 ms) to a minute (a relay far behind, or a failover), fine below 100 ms where it runs.
 */
export const RELAY_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The databases whose outbox each registry watches: the series are registered once per registry, and the first database is read. */
const outboxes = new WeakMap<Registry, Set<Kysely<EventTables>>>();

/**
 * registerOutboxMetrics exports the unpublished outbox rows of db and the
 * oldest one's age (stockroom_outbox_backlog_events,
 * stockroom_outbox_oldest_age_seconds), read when scraped. Every API process
 * of the outbox's database calls it (through its modules' watch hook); more
 * calls on the same registry add nothing.
 */
export function registerOutboxMetrics(registry: Registry, db: Kysely<EventTables>): void {
  const known = outboxes.get(registry);
  if (known) {
    known.add(db);
    return;
  }
  const dbs = new Set([db]);
  outboxes.set(registry, dbs);
  const registers = [registry];

  type Outbox = { backlog: number; ageSeconds: number };
  const readOutbox = oncePerScrape(() =>
    (async (): Promise<Outbox | undefined> => {
      const db = dbs.values().next().value;
      if (!db) return undefined;
      // Both read idx_outbox_unpublished (published_at, event_id); event ids are ULIDs, so the first is the oldest.
      // Each shard target is asked on its own (on Vitess no scatter), and the answers added up.
      const perShard = await withTimeout(
        untraced(() =>
          forEachShard(
            db,
            (shardDb) =>
              Promise.all([
                sql<{
                  n: number;
                }>`SELECT COUNT(*) AS n FROM (SELECT 1 FROM outbox_events WHERE published_at IS NULL LIMIT ${OUTBOX_COUNT_CAP}) AS backlog`.execute(
                  shardDb,
                ),
                sql<{
                  created_at: Date;
                }>`SELECT created_at FROM outbox_events WHERE published_at IS NULL ORDER BY event_id LIMIT 1`.execute(shardDb),
              ]),
            { concurrency: 16 },
          ),
        ),
        COLLECT_TIMEOUT_MS,
      );
      const oldest = Math.min(
        ...perShard.map(([, o]) => (o.rows[0] ? new Date(o.rows[0].created_at).getTime() : Number.POSITIVE_INFINITY)),
      );
      return {
        backlog: Math.min(
          OUTBOX_COUNT_CAP,
          perShard.reduce((n, [count]) => n + Number(count.rows[0]?.n ?? 0), 0),
        ),
        ageSeconds: Number.isFinite(oldest) ? Math.max(0, (Date.now() - oldest) / 1000) : 0,
      };
    })().catch(() => undefined),
  );
  const outboxGauge = (name: string, help: string, field: keyof Outbox) =>
    new Gauge({
      name,
      help,
      registers,
      async collect() {
        const o = await readOutbox();
        this.reset();
        if (o) this.set(o[field]);
      },
    });
  outboxGauge(
    "stockroom_outbox_backlog_events",
    `Outbox rows the relay has not published yet (counted up to ${OUTBOX_COUNT_CAP}).`,
    "backlog",
  );
  outboxGauge("stockroom_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none waits).", "ageSeconds");
}

/** registerRelayMetrics exports an outbox relay's stats() (stockroom_outbox_relay_*) in the process running it. */
export function registerRelayMetrics(registry: Registry, relay: RelayLike): void {
  // Registered by the process running a relay: a process without one exports none of these.
  const registers = [registry];
  const stats = () => relay.stats();
  new Gauge({
    name: "stockroom_outbox_relay_leader",
    help: "1 while this process's relay holds the lock and publishes.",
    registers,
    collect() {
      this.set(stats().leader ? 1 : 0);
    },
  });
  const total = (name: string, help: string, read: (s: RelayStatsLike) => number) => counterOf(registers, name, help, () => read(stats()));
  total("stockroom_outbox_relay_published_total", "Outbox events this relay published and marked.", (s) => s.published);
  total("stockroom_outbox_relay_duplicates_total", "Publishes JetStream already had (a republish after a crash).", (s) => s.duplicates);
  total("stockroom_outbox_relay_failures_total", "Publishes that failed and will be retried.", (s) => s.failures);
  // A histogram, not quantiles computed in the process: Prometheus aggregates it across relays and
  // over any window (histogram_quantile over rate(…_bucket)), and alerts on it like the RPC latency.
  const commitToPublish = new Histogram({
    name: "stockroom_outbox_relay_commit_to_publish_seconds",
    help: "From a change's commit (its outbox row's creation) to JetStream's ack of its event.",
    buckets: RELAY_LATENCY_BUCKETS,
    registers,
  });
  relay.onCommitToPublish((ms) => commitToPublish.observe(Math.max(0, ms) / 1000));
}
