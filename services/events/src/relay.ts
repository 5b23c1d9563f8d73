/**
 * The outbox relay: publishes committed outbox rows to the event stream, in
 * per-aggregate order, exactly once as far as consumers can tell.
 *
 * One leader per database. Any number of relays may run; each waits on the
 * MySQL named lock `outbox-relay:<database>` (GET_LOCK) and only the holder
 * publishes, running every statement on the session that holds the lock.
 * The lock dies with that session, so a crashed or partitioned leader hands
 * over within about a second (the standbys' GET_LOCK timeout) without any
 * lease clock, and a leader whose session died cannot read, so cannot
 * publish, anything more.
 *
 * Why not FOR UPDATE SKIP LOCKED with every relay publishing: relay A locks
 * rows 1–500, relay B skips them and takes 501–1000. If row 200 is version
 * N of a product and row 700 is N+1, B can publish N+1 before A publishes N.
 * Partitioning by merchant would fix that but needs a lease table and
 * rebalancing, and one leader already drains a backlog at over half the
 * speed of bare js.publish calls of the same events (about 8,000 events/s on
 * a 2-vCPU machine, measured by the former bench:relay; npm run bench:events
 * measures it behind a 500,000-item bulk job).
 * On Vitess each shard has its own outbox and VStream replaces this relay
 * (see the architecture notes).
 *
 * A batch: read the oldest unpublished rows, publish them with
 * Nats-Msg-Id = event id (many in flight, each aggregate's in order), then
 * mark the acknowledged ones published. A crash between publish and mark,
 * or a deposed leader still finishing its batch, publishes rows again; the
 * stream's duplicate window (10 minutes) drops the copies, and consumers
 * are idempotent by (aggregate, version) anyway.
 */
import { createHash } from "node:crypto";
import { sql, type Kysely } from "kysely";
import { ensureEvents, type EventStreamConfig } from "./event-stream.ts";
import { createLatencyWindow, type LatencySummary, type Logger, untraced } from "@stockroom/common/observe";
import type { NatsDeps } from "@stockroom/common/nats";
import { pause } from "@stockroom/common";
import { markPublished, publishBatch, publishOrder, pruneOutbox, readBatch, type OutboxRow } from "./relay-batch.ts";
import type { EventTables } from "./schema.ts";

export interface RelayConfig {
  /** Rows read and published per round. */
  batchSize: number;
  /** How long an idle leader waits before looking for new rows: the floor of commit-to-publish latency. */
  pollMs: number;
  /** Published rows older than this are deleted. */
  retentionMs: number;
  /** How often the leader prunes; 0 turns pruning off. */
  pruneEveryMs: number;
  /** The pause after a round in which a publish failed (NATS down, stream missing). */
  failureBackoffMs: number;
}

export const DEFAULT_RELAY: RelayConfig = {
  batchSize: 500,
  pollMs: 20,
  retentionMs: 24 * 3600_000,
  pruneEveryMs: 10 * 60_000,
  failureBackoffMs: 1_000,
};

export interface RelayDeps {
  db: Kysely<EventTables>;
  nats: NatsDeps;
  events: EventStreamConfig;
  config: RelayConfig;
  log: Logger;
}

export interface RelayStats {
  /** Whether this relay holds the lock and publishes. */
  leader: boolean;
  /** Rows this relay published (JetStream acknowledged them) since it started. */
  published: number;
  /** Of those, rows JetStream already had (a republish after a crash). */
  duplicates: number;
  /** Publishes that failed and will be retried. */
  failures: number;
  /** From the change (just before its commit) to JetStream's ack, over recent events. */
  commitToPublish: LatencySummary;
  /** Published rows deleted by pruning. */
  pruned: number;
}

export interface OutboxRelay {
  stats(): RelayStats;
  /**
   * onCommitToPublish calls listener with each published event's commit-to-ack time in milliseconds
   * (registerRelayMetrics feeds its histogram from it); the returned function unsubscribes.
   */
  onCommitToPublish(listener: (ms: number) => void): () => void;
  /** stop finishes the current round, releases the lock and resolves. */
  stop(): Promise<void>;
}

/** startOutboxRelay makes sure the event stream exists, then contends for leadership and relays while it leads. */
export async function startOutboxRelay(deps: RelayDeps): Promise<OutboxRelay> {
  const { db, nats, events, config, log } = deps;
  await ensureEvents(nats.jsm, events);
  const lockName = await relayLockName(db);
  const stopping = new AbortController();
  const latency = createLatencyWindow();
  const latencyListeners = new Set<(ms: number) => void>();
  const counters = { published: 0, duplicates: 0, failures: 0, pruned: 0 };
  let leader = false;
  let pruning: Promise<void> = Promise.resolve();

  /**
   * lead relays rounds on the lock-holding session until stopped or a
   * statement fails. A round's rows are marked on the pool while the next
   * round reads and publishes (marking takes about a third of a round); that
   * read may still see them unmarked, so they are skipped until a read starts
   * after their mark ended. Only reads need the lock's session: marking a row
   * JetStream acknowledged is right whoever does it, and a mark that fails
   * only means a republish, whose copy JetStream drops.
   */
  async function lead(conn: Kysely<EventTables>): Promise<void> {
    let nextPrune = 0;
    let beingMarked = new Set<string>();
    let marking: Promise<void> = Promise.resolve();
    let markEnded = true;
    const keyOf = (row: OutboxRow) => `${row.merchant_id}/${row.event_id}`;
    try {
      while (!stopping.signal.aborted) {
        const now = Date.now();
        if (config.pruneEveryMs > 0 && now >= nextPrune) {
          nextPrune = now + config.pruneEveryMs;
          // On the pool, beside publishing: it deletes only published rows, publishing touches only unpublished ones.
          pruning = pruning.then(() =>
            pruneOutbox(db, config.retentionMs).then(
              (n) => {
                counters.pruned += n;
              },
              (error: unknown) => log.error("outbox prune failed", { error }),
            ),
          );
        }
        if (markEnded) beingMarked = new Set();
        const read = await readBatch(conn, config.batchSize + beingMarked.size);
        const rows = read.filter((row) => !beingMarked.has(keyOf(row))).slice(0, config.batchSize);
        if (rows.length === 0) {
          await pause(config.pollMs, stopping.signal);
          continue;
        }
        const outcome = await publishBatch(nats.js, events, publishOrder(rows));
        for (const [i, row] of outcome.acked.entries()) {
          const ms = outcome.ackedAt[i]! - row.created_at.getTime();
          latency.add(ms);
          for (const listener of latencyListeners) listener(ms);
        }
        counters.published += outcome.acked.length;
        counters.duplicates += outcome.duplicates;
        await marking; // one mark at a time
        beingMarked = new Set(outcome.acked.map(keyOf));
        markEnded = false;
        marking = markPublished(db, outcome.acked).then(
          () => {
            markEnded = true;
          },
          (error: unknown) => {
            markEnded = true;
            log.warn("outbox mark failed; those rows will be republished", { error });
          },
        );
        if (outcome.error !== undefined) {
          const failed = rows.length - outcome.acked.length;
          counters.failures += failed;
          log.warn("outbox publish failed; unacknowledged rows stay queued", { failed, error: outcome.error });
          await pause(config.failureBackoffMs, stopping.signal);
        }
      }
    } finally {
      await marking;
    }
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        await db.connection().execute(async (conn) => {
          // Waits at most a second, so stop() is never held up longer.
          // The value is read by position: vtgate, which runs GET_LOCK itself (on a lock session of its own),
          // names the column after the expression and drops the alias.
          const got = await sql<Record<string, number | null>>`SELECT GET_LOCK(${lockName}, 1) AS got`.execute(conn);
          if (Number(Object.values(got.rows[0] ?? {})[0]) !== 1) return;
          leader = true;
          log.info("outbox relay leads", { lock: lockName });
          try {
            await lead(conn);
          } finally {
            leader = false;
            await sql`SELECT RELEASE_LOCK(${lockName})`.execute(conn).catch(() => {});
          }
        });
      } catch (error) {
        // Leadership is given up with the session; another relay may have a healthier path.
        log.error("outbox relay round failed; contending again", { error });
        await pause(config.failureBackoffMs, stopping.signal);
      }
    }
  }

  // Polling every few milliseconds would make a root trace of each statement; publishes still join their change's trace.
  const running = untraced(run);
  return {
    stats: () => ({ leader, ...counters, commitToPublish: latency.summary() }),
    onCommitToPublish(listener) {
      latencyListeners.add(listener);
      return () => latencyListeners.delete(listener);
    },
    async stop() {
      stopping.abort();
      await running;
      await pruning;
    },
  };
}

/** relayLockName names the lock after the database: named locks are server-wide, and several databases may share a server. */
async function relayLockName(db: Kysely<EventTables>): Promise<string> {
  const { rows } = await sql<{ name: string }>`SELECT DATABASE() AS name`.execute(db);
  const name = `outbox-relay:${rows[0]?.name ?? ""}`;
  // MySQL limits lock names to 64 characters.
  return name.length <= 64 ? name : `outbox-relay:${createHash("sha256").update(name).digest("hex").slice(0, 40)}`;
}
