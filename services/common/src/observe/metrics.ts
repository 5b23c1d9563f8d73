/**
 * Prometheus metrics. createMetrics makes one registry per process with every
 * stockroom_* series the processes export (prom-client), so each name and its
 * labels are declared here once, except a package's own series, which it
 * adds to the same registry (the outbox and relay series: @stockroom/events;
 * the webhook dispatcher's: @stockroom/notify); code that counts something
 * takes the Metrics object as a dependency. Gauges of things outside the
 * process (JetStream consumer, outbox, connection pool) are read when
 * Prometheus scrapes, never on a timer: a process nobody scrapes pays nothing.
 *
 * Label cardinality stays bounded: method and status code are enums, the
 * merchant's tier is one of TIERS (anything else is "other"), and no label
 * ever holds a merchant, job or product id. Per-merchant latency lives in
 * the SQL table the SLA recorder writes (sla.ts), not in Prometheus.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Kysely } from "kysely";
import { poolStats, type PoolStats } from "../db/database.ts";
import { withTimeout } from "../timeout.ts";

/** TIERS are the merchant tiers metrics and SLOs know; merchants.tier holds one of them. */
export const TIERS = ["standard", "plus", "enterprise"] as const;
export type Tier = (typeof TIERS)[number];

/** tierLabel maps a merchant's tier to a bounded label value ("none" before authentication). */
export function tierLabel(tier: string | undefined): string {
  if (tier === undefined) return "none";
  return (TIERS as readonly string[]).includes(tier) ? tier : "other";
}

/** RPC latency buckets (seconds): fine below 100 ms, where the SLOs are. */
const RPC_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** How long a scrape waits for one outside source (NATS, SQL) before leaving its series out. */
export const COLLECT_TIMEOUT_MS = 2_000;

export interface Metrics {
  registry: Registry;
  /** Server-side RPC latency by method, gRPC status code and merchant tier (createMetricsInterceptor). */
  rpcDuration: Histogram<"service" | "method" | "code" | "tier">;
  /** Calls refused with RESOURCE_EXHAUSTED (rate limits), by method and tier (createMetricsInterceptor). */
  rateLimitRejections: Counter<"service" | "method" | "tier">;
  /** 1 while a dependency (mysql, nats) answers this process's health probe, else 0. */
  dependencyUp: Gauge<"dependency">;
  /** Failed writes of per-minute call statistics (sla.ts retries them at the next flush). */
  slaFlushErrors: Counter;
  /** watchDatabasePool exports a createDatabase pool's in-use, free and queued counts, labelled pool. */
  // biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
  watchDatabasePool(db: Kysely<any>, pool: string): void;
  /** watchConsumer exports a JetStream consumer's pending, ack-pending, redelivered and waiting counts. */
  watchConsumer(jsm: JetStreamManager, stream: string, consumer: string): void;
}

/** counterOf exports a running total kept elsewhere (a stats() field) as a Prometheus counter, read at each scrape. */
export function counterOf(registers: Registry[], name: string, help: string, read: () => number): void {
  let seen = 0;
  new Counter({
    name,
    help,
    registers,
    collect() {
      const now = read();
      if (now > seen) this.inc(now - seen);
      seen = now;
    },
  });
}

/** oncePerScrape shares one read among the collect() calls of a scrape (they run together) and reads afresh at the next scrape. */
export function oncePerScrape<T>(read: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () => (pending ??= read().finally(() => setTimeout(() => (pending = undefined), 0)));
}

/**
 * createMetrics makes a process's registry, with Node's default process
 * metrics (CPU, memory, event loop lag, GC) unless processMetrics is false.
 */
export function createMetrics(options: { processMetrics?: boolean } = {}): Metrics {
  const registry = new Registry();
  const registers = [registry];
  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });

  // biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
  const pools = new Map<string, Kysely<any>>();
  const consumers = new Map<string, { jsm: JetStreamManager; stream: string; consumer: string }>();

  const poolGauge = (name: string, help: string, read: (s: PoolStats) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ["pool"],
      registers,
      collect() {
        this.reset();
        for (const [pool, db] of pools) {
          const stats = poolStats(db);
          if (stats) this.set({ pool }, read(stats));
        }
      },
    });
  poolGauge("stockroom_db_pool_connections_in_use", "Pool connections lent out to a query or transaction.", (s) => s.inUse);
  poolGauge("stockroom_db_pool_connections_free", "Open pool connections waiting for work.", (s) => s.free);
  poolGauge("stockroom_db_pool_queued_requests", "Callers waiting for a pool connection (the pool is saturated).", (s) => s.queued);
  poolGauge("stockroom_db_pool_max_connections", "The pool's connection limit (DB_POOL_SIZE).", (s) => s.limit);

  // One consumer-info request per consumer and scrape feeds all four gauges.
  type Lag = { pending: number; ackPending: number; redelivered: number; waiting: number };
  const readLag = oncePerScrape(() =>
    Promise.all(
      [...consumers].map(async ([key, c]) => {
        const ci = await withTimeout(c.jsm.consumers.info(c.stream, c.consumer), COLLECT_TIMEOUT_MS).catch(() => undefined);
        const lag: Lag | undefined = ci && {
          pending: ci.num_pending,
          ackPending: ci.num_ack_pending,
          redelivered: ci.num_redelivered,
          waiting: ci.num_waiting,
        };
        return [key, lag] as const;
      }),
    ).then((entries) => new Map(entries.filter((e): e is readonly [string, Lag] => e[1] !== undefined))),
  );
  const lagGauge = (name: string, help: string, field: keyof Lag) =>
    new Gauge({
      name,
      help,
      labelNames: ["stream", "consumer"],
      registers,
      async collect() {
        const lag = await readLag();
        this.reset();
        for (const [key, c] of consumers) {
          const l = lag.get(key);
          if (l) this.set({ stream: c.stream, consumer: c.consumer }, l[field]);
        }
      },
    });
  lagGauge(
    "stockroom_jetstream_consumer_pending_messages",
    "Messages in the stream not yet delivered to any worker (queue lag).",
    "pending",
  );
  lagGauge("stockroom_jetstream_consumer_ack_pending_messages", "Messages delivered to workers and not yet acknowledged.", "ackPending");
  lagGauge("stockroom_jetstream_consumer_redelivered_messages", "Unacknowledged messages delivered more than once.", "redelivered");
  lagGauge("stockroom_jetstream_consumer_waiting_pulls", "Pull requests waiting for messages (idle worker capacity).", "waiting");

  return {
    registry,
    rpcDuration: new Histogram({
      name: "stockroom_rpc_server_duration_seconds",
      help: "Server-side RPC latency by method, gRPC status code and merchant tier.",
      labelNames: ["service", "method", "code", "tier"],
      buckets: RPC_BUCKETS,
      registers,
    }),
    rateLimitRejections: new Counter({
      name: "stockroom_rate_limit_rejections_total",
      help: "Calls refused with RESOURCE_EXHAUSTED (rate limits), by method and merchant tier.",
      labelNames: ["service", "method", "tier"],
      registers,
    }),
    dependencyUp: new Gauge({
      name: "stockroom_dependency_up",
      help: "1 while the dependency (mysql, nats) answers this process's health probe, else 0.",
      labelNames: ["dependency"],
      registers,
    }),
    slaFlushErrors: new Counter({
      name: "stockroom_sla_flush_errors_total",
      help: "Failed writes of per-minute call statistics (retried at the next flush).",
      registers,
    }),
    watchDatabasePool(db, pool) {
      pools.set(pool, db);
    },
    watchConsumer(jsm, stream, consumer) {
      consumers.set(`${stream}/${consumer}`, { jsm, stream, consumer });
    },
  };
}
