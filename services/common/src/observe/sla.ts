/**
 * Per-merchant call statistics for the SLA report (tools/sla-report.ts).
 * Prometheus cannot hold per-merchant latency (a label per merchant is
 * unbounded cardinality), so each API process aggregates its calls in memory
 * per merchant, method and minute: calls, client and server errors, and a
 * latency histogram of log buckets (4 per doubling, so a percentile read
 * from it is at most 19% high, never low). Every flushEveryMs the minutes
 * touched since the last flush are upserted, one row per process (its
 * instance id), so rows are replaced, never merged across processes, and a
 * failed flush is retried with the same cumulative figures. A call costs a
 * Map lookup and three increments; the database sees one multi-row INSERT
 * per flush.
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Kysely } from "kysely";
import { Code } from "@connectrpc/connect";
import { insertRows } from "../db/database.ts";
import { forEachShard } from "../db/shards.ts";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import type { CommonTables } from "../db/schema.ts";
import { untraced } from "./trace-context.ts";
import { taskFailures } from "../task-failures.ts";

/** Bucket k holds latencies in (upper(k-1), upper(k)] ms; upper(k) = 0.1 ms × 2^(k/4). */
const BUCKET_BASE_MS = 0.1;
const BUCKETS_PER_DOUBLING = 4;
const MAX_BUCKET = 96; // 0.1 ms × 2^24 ≈ 28 minutes

/** bucketOf is the index of the log bucket holding a latency of ms. */
export function bucketOf(ms: number): number {
  if (!(ms > BUCKET_BASE_MS)) return 0;
  return Math.min(MAX_BUCKET, Math.ceil(BUCKETS_PER_DOUBLING * Math.log2(ms / BUCKET_BASE_MS) - 1e-9));
}

/** bucketUpperMs is the largest latency bucket k holds. */
export function bucketUpperMs(k: number): number {
  return BUCKET_BASE_MS * 2 ** (k / BUCKETS_PER_DOUBLING);
}

/** Buckets map a bucket index to a call count. */
export type Buckets = Map<number, number>;

/** parseBuckets reads a latency_buckets column; mergeInto adds it to an accumulator. */
export function parseBuckets(text: string, into: Buckets = new Map()): Buckets {
  for (const [k, n] of Object.entries(JSON.parse(text) as Record<string, number>)) into.set(Number(k), (into.get(Number(k)) ?? 0) + n);
  return into;
}

/** percentileMs reads the p-quantile (0 < p ≤ 1) from buckets as its bucket's upper bound; undefined when empty. */
export function percentileMs(buckets: Buckets, p: number): number | undefined {
  let total = 0;
  for (const n of buckets.values()) total += n;
  if (total === 0) return undefined;
  const rank = Math.ceil(p * total);
  let seen = 0;
  for (const k of [...buckets.keys()].sort((a, b) => a - b)) {
    seen += buckets.get(k)!;
    if (seen >= rank) return bucketUpperMs(k);
  }
  return undefined;
}

/** SERVER_ERRORS are the codes that count against the service's error budget; the rest are the caller's. */
const SERVER_ERRORS = new Set<Code>([Code.Unknown, Code.DeadlineExceeded, Code.Internal, Code.Unavailable, Code.DataLoss]);

/** isServerError tells whether a status code counts against the error SLO. */
export function isServerError(code: Code | undefined): boolean {
  return code !== undefined && SERVER_ERRORS.has(code);
}

export interface CallRecorder {
  /** record adds one finished call; code undefined is OK. */
  record(merchantId: string, method: string, ms: number, code: Code | undefined): void;
  /** flush writes the minutes touched since the last flush. */
  flush(): Promise<void>;
  /** stop flushes one last time and stops the timer. */
  stop(): Promise<void>;
}

interface Minute {
  merchantId: string;
  method: string;
  minute: number;
  calls: number;
  clientErrors: number;
  serverErrors: number;
  buckets: Buckets;
  dirty: boolean;
}

/** currentMinute is the start of the wall-clock minute now (ms since the epoch). */
function currentMinute(): number {
  return Math.floor(Date.now() / 60_000) * 60_000;
}

/** startCallRecorder aggregates calls and flushes them every flushEveryMs; see the module comment. */
export function startCallRecorder(options: {
  db: Kysely<CommonTables>;
  flushEveryMs: number;
  /** Distinguishes this process's rows; default host:pid:random. */
  instanceId?: string;
  /** Minutes held in memory at most (a flush that keeps failing must not grow without end). */
  maxEntries?: number;
  /** Rows older than this are deleted, hourly (default 35 days; 0 keeps them). */
  retentionMs?: number;
  metrics?: Metrics;
  log?: Logger;
}): CallRecorder {
  const instanceId = (options.instanceId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`).slice(0, 64);
  const maxEntries = options.maxEntries ?? 50_000;
  const minutes = new Map<string, Minute>();
  let flushing: Promise<void> = Promise.resolve();
  // What was not written stays dirty and goes with the next flush.
  const flushes = options.log && taskFailures(options.log, "writing call statistics");

  const write = async () => {
    const dirty = [...minutes.values()].filter((m) => m.dirty);
    if (dirty.length === 0) return;
    for (const m of dirty) m.dirty = false;
    try {
      for (let i = 0; i < dirty.length; i += 500) {
        const rows = dirty.slice(i, i + 500).map((m) => ({
          merchant_id: m.merchantId,
          minute_start: new Date(m.minute),
          method: m.method,
          instance_id: instanceId,
          calls: m.calls,
          client_errors: m.clientErrors,
          server_errors: m.serverErrors,
          latency_buckets: JSON.stringify(Object.fromEntries(m.buckets)),
        }));
        await untraced(() =>
          insertRows(options.db, "rpc_call_minutes", rows, {
            onDuplicateKeyUpdate: ["calls", "client_errors", "server_errors", "latency_buckets"],
          }),
        );
      }
    } catch (error) {
      for (const m of dirty) m.dirty = true;
      options.metrics?.slaFlushErrors.inc();
      flushes?.failed(error);
      return;
    }
    flushes?.succeeded();
    // A minute that has passed is complete once written.
    const current = currentMinute();
    for (const [key, m] of minutes) if (m.minute < current && !m.dirty) minutes.delete(key);
  };
  const flush = () => (flushing = flushing.then(write));
  const timer = options.flushEveryMs > 0 ? setInterval(() => void flush(), options.flushEveryMs) : undefined;
  timer?.unref();
  const retentionMs = options.retentionMs ?? 35 * 86_400_000;
  // Every process prunes; the deletes are idempotent and bounded, and the table is small.
  const pruneTimer =
    timer && retentionMs > 0
      ? setInterval(() => {
          flushing = flushing.then(() =>
            untraced(() =>
              // Spans merchants: each shard target in turn (no scatter on Vitess).
              forEachShard(options.db, (shardDb) =>
                shardDb
                  .deleteFrom("rpc_call_minutes")
                  .where("minute_start", "<", new Date(Date.now() - retentionMs))
                  .limit(10_000)
                  .execute(),
              ),
            ).then(
              () => {},
              (error: unknown) => options.log?.warn("pruning call statistics failed", { error }),
            ),
          );
        }, 3_600_000)
      : undefined;
  pruneTimer?.unref();

  return {
    record(merchantId, method, ms, code) {
      const minute = currentMinute();
      const key = `${merchantId}\u0000${method}\u0000${minute}`;
      let m = minutes.get(key);
      if (!m) {
        if (minutes.size >= maxEntries) return;
        m = { merchantId, method, minute, calls: 0, clientErrors: 0, serverErrors: 0, buckets: new Map(), dirty: true };
        minutes.set(key, m);
      }
      m.dirty = true;
      m.calls++;
      if (isServerError(code)) m.serverErrors++;
      else if (code !== undefined) m.clientErrors++;
      const k = bucketOf(ms);
      m.buckets.set(k, (m.buckets.get(k) ?? 0) + 1);
    },
    flush,
    async stop() {
      if (timer) clearInterval(timer);
      if (pruneTimer) clearInterval(pruneTimer);
      await flush();
    },
  };
}
