/**
 * The outbox relay: publishes committed outbox rows to the event stream, in
 * per-aggregate order, exactly once as far as consumers can tell.
 *
 * One leader per database (per shard on Vitess). Any number of relays may run; each waits on the
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
 * On Vitess each shard has its own outbox: the relay runs one leadership
 * per shard target (shardTargets), each reading its shard's rows with
 * shard-targeted statements (no scatter). RELAY_SOURCE=vstream instead
 * follows vtgate's VStream (relay-vstream.ts), taking every shard's lock,
 * so a polling and a VStream relay never publish a shard at once.
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
import { pause, taskFailures } from "@stockroom/common";
import { SHARD_REDISCOVER_MS, shardTargets, type ShardTarget } from "@stockroom/common/db";
import {
  eventTotal,
  markPublished,
  publishBatch,
  publishOrder,
  pruneOutbox,
  readBatch,
  takeEvents,
  type OutboxRow,
} from "./relay-batch.ts";
import type { EventTables } from "./schema.ts";

export interface RelayConfig {
  /**
   * Events read and published per round: rows of one event, or as many
   * batch rows as fit (at least one).
   */
  batchSize: number;
  /** How long an idle leader waits before looking for new rows: the floor of commit-to-publish latency. */
  pollMs: number;
  /** Published rows older than this are deleted. */
  retentionMs: number;
  /** How often the leader prunes; 0 turns pruning off. */
  pruneEveryMs: number;
  /** The pause after a round in which a publish failed (NATS down, stream missing). */
  failureBackoffMs: number;
  /** Where committed rows come from: "poll" reads the table (this file); "vstream" follows vtgate's VStream (relay-vstream.ts). */
  source: "poll" | "vstream";
  /** vtgate's gRPC address (host:port), for source "vstream". */
  vtgateGrpcAddr: string;
  /** The JetStream stream holding the VStream relay's positions (relay-positions.ts). */
  positionsStream: string;
}

export const DEFAULT_RELAY: RelayConfig = {
  batchSize: 500,
  pollMs: 20,
  retentionMs: 24 * 3600_000,
  pruneEveryMs: 10 * 60_000,
  failureBackoffMs: 1_000,
  source: "poll",
  vtgateGrpcAddr: "",
  positionsStream: "STOCKROOM_RELAY_POSITIONS",
};

export interface RelayDeps {
  db: Kysely<EventTables>;
  nats: NatsDeps;
  events: EventStreamConfig;
  config: RelayConfig;
  log: Logger;
}

export interface RelayStats {
  /** Whether this relay holds a lock and publishes (of some shard on Vitess). */
  leader: boolean;
  /** The shard targets whose lock this relay holds (the database's name on MySQL/MariaDB). */
  leading: string[];
  /** Events this relay published (JetStream acknowledged them) since it started; a batch counts its events. */
  published: number;
  /** Of those, events JetStream already had (a republish after a crash). */
  duplicates: number;
  /** Events whose publish failed and will be retried. */
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

/**
 * startOutboxRelay makes sure the event stream exists, then, for each shard
 * target of db (shardTargets: the database itself on MySQL/MariaDB, each
 * shard of the keyspace on Vitess), contends for that target's leadership and
 * relays its outbox while it leads. The shard list is looked at again every
 * SHARD_REDISCOVER_MS: a new shard gets a runner, a vanished one's stops.
 */
export async function startOutboxRelay(deps: RelayDeps): Promise<OutboxRelay> {
  const { db, nats, events, config, log } = deps;
  await ensureEvents(nats.jsm, events);
  const firstTargets = await shardTargets(db);
  const stopping = new AbortController();
  const latency = createLatencyWindow();
  const latencyListeners = new Set<(ms: number) => void>();
  const counters = { published: 0, duplicates: 0, failures: 0, pruned: 0 };
  const leading = new Set<string>();
  const prunes = new Set<Promise<void>>();

  /**
   * lead relays one shard target's rounds on the reading session until
   * stopped or a statement fails. A round's rows are marked on the target's
   * pool while the next round reads and publishes (marking takes about a
   * third of a round); that read may still see them unmarked, so they are
   * skipped until a read starts after their mark ended. Only reads need the
   * lock: marking a row JetStream acknowledged is right whoever does it, and
   * a mark that fails only means a republish, whose copy JetStream drops.
   * holdsLock, when the lock is on another session than the reads (Vitess),
   * is called before a read at most once a second and fails if that session
   * died, so a deposed leader stops within about a second.
   */
  async function lead(
    conn: Kysely<EventTables>,
    target: ShardTarget<EventTables>,
    signal: AbortSignal,
    holdsLock?: () => Promise<unknown>,
  ): Promise<void> {
    let nextPrune = 0;
    let lockCheckedAt = Date.now();
    let beingMarked = new Set<string>();
    let markedEvents = 0;
    let marking: Promise<void> = Promise.resolve();
    let markEnded = true;
    const keyOf = (row: OutboxRow) => `${row.merchant_id}/${row.event_id}`;
    // Unacknowledged rows stay queued and are published again after the pause.
    const publishing = taskFailures(log, "outbox publish", { fields: { shard: target.name } });
    try {
      while (!signal.aborted) {
        const now = Date.now();
        if (config.pruneEveryMs > 0 && now >= nextPrune) {
          nextPrune = now + config.pruneEveryMs;
          // On the pool, beside publishing: it deletes only published rows, publishing touches only unpublished ones.
          const pruning: Promise<void> = pruneOutbox(target.db, config.retentionMs).then(
            (n) => {
              counters.pruned += n;
            },
            (error: unknown) => log.error("outbox prune failed", { shard: target.name, error }),
          );
          prunes.add(pruning);
          void pruning.finally(() => prunes.delete(pruning));
        }
        if (holdsLock && now - lockCheckedAt >= 1_000) {
          await holdsLock();
          lockCheckedAt = now;
        }
        if (markEnded) {
          beingMarked = new Set();
          markedEvents = 0;
        }
        const read = await readBatch(conn, config.batchSize + markedEvents);
        const rows = takeEvents(
          read.filter((row) => !beingMarked.has(keyOf(row))),
          config.batchSize,
        );
        if (rows.length === 0) {
          await pause(config.pollMs, signal);
          continue;
        }
        const outcome = await publishBatch(nats.js, events, publishOrder(rows));
        for (const [i, row] of outcome.acked.entries()) {
          const ms = outcome.ackedAt[i]! - row.created_at.getTime();
          latency.add(ms);
          for (const listener of latencyListeners) listener(ms);
        }
        counters.published += eventTotal(outcome.acked);
        counters.duplicates += eventTotal(outcome.duplicated);
        await marking; // one mark at a time
        beingMarked = new Set(outcome.acked.map(keyOf));
        markedEvents = eventTotal(outcome.acked);
        markEnded = false;
        marking = markPublished(target.db, outcome.acked).then(
          () => {
            markEnded = true;
          },
          (error: unknown) => {
            markEnded = true;
            log.warn("outbox mark failed; those rows will be republished", { shard: target.name, error });
          },
        );
        if (outcome.error !== undefined) {
          const failed = eventTotal(rows) - eventTotal(outcome.acked);
          counters.failures += failed;
          publishing.failed(outcome.error, { failed });
          await pause(publishing.delayMs(config.failureBackoffMs), signal);
        } else publishing.succeeded();
      }
    } finally {
      await marking;
    }
  }

  /**
   * runShard contends for one target's lock and leads while it holds it. The
   * lock is taken on a session of db: on MySQL/MariaDB the reads run on that
   * same session (a leader whose session died cannot read); on Vitess, where
   * vttablet refuses GET_LOCK on a shard-targeted session, the lock lives in
   * vtgate's lock session of a keyspace connection (named after the shard)
   * and the reads run on a session of the shard target, checked against the
   * lock's session every second.
   */
  async function runShard(target: ShardTarget<EventTables>, signal: AbortSignal): Promise<void> {
    let lockName: string | undefined;
    // Leadership is given up with the session; another relay may have a healthier path.
    const rounds = taskFailures(log, "outbox relay round", { fields: { shard: target.name } });
    while (!signal.aborted) {
      try {
        lockName ??= await relayLockName(db, target);
        const lock = lockName;
        await db.connection().execute(async (lockConn) => {
          // Waits at most a second, so stop() is never held up longer.
          // The value is read by position: vtgate, which runs GET_LOCK itself (on a lock session of its own),
          // names the column after the expression and drops the alias.
          const got = await sql<{ got: number | null }>`SELECT GET_LOCK(${lock}, 1) AS got`.execute(lockConn);
          rounds.succeeded();
          if (Number(Object.values(got.rows[0] ?? {})[0]) !== 1) return;
          leading.add(target.name);
          log.info("outbox relay leads", { lock, shard: target.name });
          try {
            if (target.db === db) await lead(lockConn, target, signal);
            else await target.db.connection().execute((conn) => lead(conn, target, signal, () => sql`SELECT 1`.execute(lockConn)));
          } finally {
            leading.delete(target.name);
            await sql`SELECT RELEASE_LOCK(${lock})`.execute(lockConn).catch(() => {});
          }
        });
      } catch (error) {
        rounds.failed(error);
        await pause(rounds.delayMs(config.failureBackoffMs), signal);
      }
    }
  }

  async function run(): Promise<void> {
    const runners = new Map<string, { stop: AbortController; done: Promise<void> }>();
    let targets = firstTargets;
    while (!stopping.signal.aborted) {
      for (const target of targets) {
        if (runners.has(target.name)) continue;
        const stop = new AbortController();
        runners.set(target.name, { stop, done: runShard(target, AbortSignal.any([stopping.signal, stop.signal])) });
      }
      for (const [name, runner] of runners) {
        if (targets.some((t) => t.name === name)) continue;
        runner.stop.abort(); // the shard is gone (resharded)
        runners.delete(name);
      }
      await pause(SHARD_REDISCOVER_MS, stopping.signal);
      if (stopping.signal.aborted) break;
      try {
        targets = await shardTargets(db);
      } catch (error) {
        log.error("outbox relay could not list the shards; keeps the ones it has", { error });
      }
    }
    await Promise.all([...runners.values()].map((r) => r.done));
  }

  // Polling every few milliseconds would make a root trace of each statement; publishes still join their change's trace.
  const running = untraced(run);
  return {
    stats: () => ({ leader: leading.size > 0, leading: [...leading].sort(), ...counters, commitToPublish: latency.summary() }),
    onCommitToPublish(listener) {
      latencyListeners.add(listener);
      return () => latencyListeners.delete(listener);
    },
    async stop() {
      stopping.abort();
      await running;
      await Promise.all([...prunes]);
    },
  };
}

/**
 * relayLockName names the lock after the database (named locks are
 * server-wide, and several databases may share a server), on Vitess after
 * the shard (`outbox-relay:stockroom/-80`).
 */
async function relayLockName(db: Kysely<EventTables>, target: ShardTarget<EventTables>): Promise<string> {
  const database = target.db === db ? (await sql<{ name: string }>`SELECT DATABASE() AS name`.execute(db)).rows[0]?.name : target.name;
  return lockNameOf(database ?? "");
}

/** lockNameOf is the relay's lock of a database or shard target (e.g. "stockroom/-80"); the VStream relay takes every shard's. */
export function lockNameOf(target: string): string {
  const name = `outbox-relay:${target}`;
  // MySQL limits lock names to 64 characters.
  return name.length <= 64 ? name : `outbox-relay:${createHash("sha256").update(name).digest("hex").slice(0, 40)}`;
}
