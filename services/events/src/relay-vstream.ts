/**
 * The outbox relay's VStream source (RELAY_SOURCE=vstream): on Vitess,
 * instead of polling outbox_events, the leader follows vtgate's VStream of
 * the keyspace (vstream.ts) and publishes each committed insert, with the
 * same subjects, headers and Nats-Msg-Id as the polling relay (relay-batch.ts).
 *
 * Order: one shard holds all of a merchant's rows, and a shard's events
 * arrive in commit order, whole transactions at a time; an aggregate's
 * versions commit in order (each locks the aggregate's row), so publishing
 * a shard's rows in arrival order, each aggregate's next one only after its
 * previous one was acknowledged (publishBatch), stores them in version order.
 *
 * Position: after a batch is acknowledged, the VGTID that covers it (each
 * shard's GTID position) is saved with compare-and-set in NATS
 * (relay-positions.ts); a restart, here or on a standby, resumes from there.
 * A crash between publish and save republishes at most that batch, which
 * the stream's duplicate window stores once. With no saved position (the
 * first start, or a switch from polling) the relay starts at "current" on
 * every shard and first publishes the rows still unpublished in the table,
 * so nothing committed before it started is skipped.
 *
 * Published rows are marked published_at as the polling relay marks them
 * (one mark at a time, beside publishing), so the pruner deletes the same
 * rows, the backlog metrics count the same thing, and switching back to
 * polling republishes nothing. The marks and prunes come back through the
 * stream as UPDATE and DELETE row events, which are skipped.
 *
 * Leadership is the polling relay's: the MySQL named lock
 * `outbox-relay:<database>` (through vtgate), checked every second on its
 * session; losing it, or a failed compare-and-set of the position, ends the
 * stream.
 */
import type { Kysely } from "kysely";
import { sql } from "kysely";
import { pause } from "@stockroom/common";
import { createLatencyWindow, untraced } from "@stockroom/common/observe";
import { ensureEvents } from "./event-stream.ts";
import type { Field } from "./gen/vitess/query_pb.js";
import { markPublished, type OutboxRow, publishBatch, publishOrder, pruneOutbox, readBatch } from "./relay-batch.ts";
import { openPositionStore, type PositionStore } from "./relay-positions.ts";
import { type OutboxRelay, type RelayDeps, relayLockName, startOutboxRelay } from "./relay.ts";
import type { EventTables } from "./schema.ts";
import { decodeRow, type ShardPosition, streamOutbox, toOutboxRow, VEventType, type VitessClient, vtgateClient } from "./vstream.ts";

export interface VStreamRelayDeps extends RelayDeps {
  /** A client of vtgate's gRPC API; by default one for config.vtgateGrpcAddr. */
  vtgate?: VitessClient;
  /** Overrides the named lock (tests sharing a keyspace); by default the polling relay's, so the two never lead at once. */
  lockName?: string;
}

/** A stream with no event (vtgate sends a heartbeat every second) for this long is given up and reopened. */
const IDLE_STREAM_MS = 10_000;
/** How often a position that moved without rows (other tables' transactions) is saved. */
const IDLE_SAVE_MS = 1_000;

/** startVStreamRelay makes sure the event stream exists, then contends for leadership and relays the VStream while it leads. */
export async function startVStreamRelay(deps: VStreamRelayDeps): Promise<OutboxRelay> {
  const { db, nats, events, config, log } = deps;
  await ensureEvents(nats.jsm, events);
  const vtgate = deps.vtgate ?? vtgateClient(config.vtgateGrpcAddr);
  const lockName = deps.lockName ?? (await relayLockName(db));
  const keyspace = await currentKeyspace(db);
  const positions = await openPositionStore(nats, {
    stream: config.positionsStream,
    replicas: events.replicas,
    eventStream: events.stream,
    keyspace,
  });
  const stopping = new AbortController();
  const latency = createLatencyWindow();
  const latencyListeners = new Set<(ms: number) => void>();
  const counters = { published: 0, duplicates: 0, failures: 0, pruned: 0 };
  let leader = false;
  let pruning: Promise<void> = Promise.resolve();
  let nextPrune = 0;

  function prune(): void {
    const now = Date.now();
    if (config.pruneEveryMs <= 0 || now < nextPrune) return;
    nextPrune = now + config.pruneEveryMs;
    pruning = pruning.then(() =>
      pruneOutbox(db, config.retentionMs).then(
        (n) => {
          counters.pruned += n;
        },
        (error: unknown) => log.error("outbox prune failed", { error }),
      ),
    );
  }

  /**
   * publishAll publishes rows until every one is acknowledged, keeping each
   * aggregate's order (a failed row and its aggregate's later rows are
   * retried, after the failure backoff), and marks them published one mark
   * at a time. It returns false if the relay stops before that.
   */
  let marking: Promise<void> = Promise.resolve();
  async function publishAll(rows: OutboxRow[], signal: AbortSignal): Promise<boolean> {
    let pending = publishOrder(rows);
    while (pending.length > 0) {
      const outcome = await publishBatch(nats.js, events, pending);
      for (const [i, row] of outcome.acked.entries()) {
        const ms = outcome.ackedAt[i]! - row.created_at.getTime();
        latency.add(ms);
        for (const listener of latencyListeners) listener(ms);
      }
      counters.published += outcome.acked.length;
      counters.duplicates += outcome.duplicates;
      await marking;
      marking = markPublished(db, outcome.acked).catch((error: unknown) =>
        log.warn("outbox mark failed; the rows are published, but stay unpublished in the table", { error }),
      );
      if (outcome.error === undefined) return true;
      const acked = new Set(outcome.acked);
      pending = pending.filter((row) => !acked.has(row));
      counters.failures += pending.length;
      log.warn("outbox publish failed; retrying the unacknowledged rows", { failed: pending.length, error: outcome.error });
      await pause(config.failureBackoffMs, signal);
      if (signal.aborted) return false;
    }
    return true;
  }

  /** catchUp publishes the rows the table still holds unpublished (the first start: nothing before "current" is skipped). */
  async function catchUp(signal: AbortSignal): Promise<boolean> {
    for (;;) {
      const rows = await readBatch(db, config.batchSize);
      if (rows.length === 0) return true;
      if (!(await publishAll(rows, signal))) return false;
      await marking; // the next read must not see these rows again
      if (rows.length < config.batchSize) return true;
    }
  }

  /** follow streams from the given positions until the signal aborts or the stream fails. */
  async function follow(start: ShardPosition[], bootstrap: boolean, store: PositionStore, session: AbortController): Promise<void> {
    const fields = new Map<string, Field[]>();
    /** Rows of transactions not committed yet, per shard. */
    const open = new Map<string, OutboxRow[]>();
    /** Committed rows not published yet, in arrival order. */
    let ready: OutboxRow[] = [];
    let position = start;
    let saved = JSON.stringify(start);
    let savedAt = Date.now();
    let needsCatchUp = bootstrap;
    const real = (p: ShardPosition[]) => p.length > 0 && p.every((s) => s.gtid !== "current");

    /** flush publishes the ready rows, then saves the position that covers them. */
    async function flush(): Promise<boolean> {
      if (needsCatchUp) {
        if (!real(position)) return true; // a shard's stream has not started yet: its start position is unknown
        log.info("vstream relay: no saved position; publishing the table's unpublished rows first");
        if (!(await catchUp(session.signal))) return false;
        needsCatchUp = false;
      }
      if (ready.length > 0) {
        const rows = ready;
        ready = [];
        if (!(await publishAll(rows, session.signal))) return false;
      }
      const text = JSON.stringify(position);
      if (text !== saved && real(position) && [...open.values()].every((rows) => rows.length === 0)) {
        await store.save(position);
        saved = text;
        savedAt = Date.now();
      }
      return true;
    }

    lastEventAt = Date.now();
    try {
      for await (const response of streamOutbox(vtgate, start, session.signal)) {
        lastEventAt = Date.now();
        for (const event of response.events) {
          const shardKey = `${event.keyspace}/${event.shard}`;
          switch (event.type) {
            case VEventType.FIELD:
              if (event.fieldEvent) fields.set(shardKey, event.fieldEvent.fields);
              break;
            case VEventType.ROW: {
              const columns = fields.get(shardKey);
              for (const change of event.rowEvent?.rowChanges ?? []) {
                // Inserts only: updates are our marks, deletes the pruner's.
                if (change.before !== undefined || change.after === undefined) continue;
                if (!columns) throw new Error(`vstream: a ROW event of ${shardKey} before its FIELD event`);
                const rows = open.get(shardKey) ?? [];
                rows.push(toOutboxRow(decodeRow(columns, change.after)));
                open.set(shardKey, rows);
              }
              break;
            }
            case VEventType.VGTID:
              // Sent just before a transaction's COMMIT, with every shard's position once it is included.
              if (event.vgtid) position = event.vgtid.shardGtids.map((g) => ({ keyspace: g.keyspace, shard: g.shard, gtid: g.gtid }));
              break;
            case VEventType.COMMIT: {
              const rows = open.get(shardKey);
              if (rows && rows.length > 0) {
                ready.push(...rows);
                open.set(shardKey, []);
              }
              if (ready.length >= config.batchSize && !(await flush())) return;
              break;
            }
            case VEventType.ROLLBACK:
              open.set(shardKey, []);
              break;
            case VEventType.JOURNAL:
              log.info("vstream relay: reshard journal; vtgate moves the stream to the new shards", { shard: shardKey });
              break;
            default:
              break;
          }
        }
        prune();
        if (ready.length > 0 || needsCatchUp || Date.now() - savedAt >= IDLE_SAVE_MS) {
          if (!(await flush())) return;
        }
      }
      throw new Error("vstream ended");
    } catch (error) {
      if (!session.signal.aborted) throw error;
    } finally {
      // Stopping: publish what was received whole and save its position, so a restart republishes nothing.
      if (stopping.signal.aborted && failure === undefined && !needsCatchUp) {
        try {
          await flush();
        } catch (error) {
          log.warn("vstream relay: could not save the final position; a restart republishes from the last one", { error });
        }
      }
      await marking;
    }
  }

  let lastEventAt = 0;
  let failure: unknown;

  /** lead relays while this relay holds the lock on conn. */
  async function lead(conn: Kysely<EventTables>): Promise<void> {
    const session = new AbortController();
    failure = undefined;
    const onStop = () => session.abort();
    stopping.signal.addEventListener("abort", onStop, { once: true });
    // The lock's session must stay alive, and the stream must not go silent.
    const watchdog = (async () => {
      while (!session.signal.aborted) {
        await pause(1_000, session.signal);
        if (session.signal.aborted) return;
        try {
          await sql`SELECT 1`.execute(conn);
        } catch (error) {
          failure ??= new Error("the lock's session failed: giving up leadership", { cause: error });
          session.abort();
        }
        if (Date.now() - lastEventAt > IDLE_STREAM_MS) {
          failure ??= new Error(`no VStream event for ${IDLE_STREAM_MS} ms: reopening`);
          session.abort();
        }
      }
    })();
    try {
      const stored = await positions.load();
      if (stored && stored.shards.length > 0) {
        log.info("vstream relay resumes", { positions: stored.shards });
        await follow(stored.shards, false, positions, session);
      } else {
        const shards = await keyspaceShards(db, keyspace);
        log.info("vstream relay starts at the current position", { keyspace, shards });
        await follow(
          shards.map((shard) => ({ keyspace, shard, gtid: "current" })),
          true,
          positions,
          session,
        );
      }
    } finally {
      session.abort();
      stopping.signal.removeEventListener("abort", onStop);
      await watchdog;
    }
    if (failure !== undefined) throw failure;
  }

  async function run(): Promise<void> {
    while (!stopping.signal.aborted) {
      try {
        await db.connection().execute(async (conn) => {
          const got = await sql<{ got: number | null }>`SELECT GET_LOCK(${lockName}, 1) AS got`.execute(conn);
          if (Number(Object.values(got.rows[0] ?? {})[0]) !== 1) return;
          leader = true;
          log.info("outbox relay leads (vstream)", { lock: lockName, keyspace });
          try {
            await lead(conn);
          } finally {
            leader = false;
            await sql`SELECT RELEASE_LOCK(${lockName})`.execute(conn).catch(() => {});
          }
        });
      } catch (error) {
        log.error("vstream relay failed; contending again", { error });
        await pause(config.failureBackoffMs, stopping.signal);
      }
    }
  }

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

/** currentKeyspace is the connection's database: on vtgate, the keyspace. */
async function currentKeyspace(db: Kysely<EventTables>): Promise<string> {
  const { rows } = await sql<{ name: string | null }>`SELECT DATABASE() AS name`.execute(db);
  const name = rows[0]?.name;
  if (!name) throw new Error("vstream relay: DATABASE_URL names no database (on vtgate: the keyspace)");
  return name;
}

/** keyspaceShards lists the keyspace's shards as vtgate serves them. */
export async function keyspaceShards(db: Kysely<EventTables>, keyspace: string): Promise<string[]> {
  const { rows } = await sql<Record<string, string>>`SHOW VITESS_SHARDS`.execute(db);
  const shards = rows
    .map((row) => String(Object.values(row)[0]))
    .filter((name) => name.startsWith(`${keyspace}/`))
    .map((name) => name.slice(keyspace.length + 1));
  if (shards.length === 0) throw new Error(`vstream relay: vtgate serves no shard of keyspace ${keyspace} (is DATABASE_URL vtgate's?)`);
  return shards;
}

/** startRelay starts the relay config.source names: polling the table (relay.ts) or following vtgate's VStream. */
export function startRelay(deps: VStreamRelayDeps): Promise<OutboxRelay> {
  return deps.config.source === "vstream" ? startVStreamRelay(deps) : startOutboxRelay(deps);
}
