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
 * Leadership is the polling relay's: the MySQL named locks
 * `outbox-relay:<keyspace>/<shard>`, every shard's, taken on one vtgate
 * session and checked every second on it; losing it, or a failed
 * compare-and-set of the position, ends the stream.
 */
import type { Kysely } from "kysely";
import { sql } from "kysely";
import { pause, taskFailures } from "@stockroom/common";
import { shardTargets } from "@stockroom/common/db";
import { createLatencyWindow, untraced } from "@stockroom/common/observe";
import { ensureEvents } from "./event-stream.ts";
import type { Field } from "./gen/vitess/query_pb.js";
import {
  eventTotal,
  lastUnpublished,
  markPublished,
  type OutboxRow,
  publishBatch,
  publishOrder,
  pruneOutbox,
  readBatch,
} from "./relay-batch.ts";
import { openPositionStore, type PositionStore } from "./relay-positions.ts";
import { lockNameOf, type OutboxRelay, type RelayDeps, startOutboxRelay } from "./relay.ts";
import type { EventTables } from "./schema.ts";
import { decodeRow, type ShardPosition, streamOutbox, toOutboxRow, VEventType, type VitessClient, vtgateClient } from "./vstream.ts";

export interface VStreamRelayDeps extends RelayDeps {
  /** A client of vtgate's gRPC API; by default one for config.vtgateGrpcAddr. */
  vtgate?: VitessClient;
  /** One named lock instead of every shard's (tests sharing a keyspace); by default the polling relay's shard locks, so the two never lead a shard at once. */
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
  let leading: string[] = [];
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
  // The unacknowledged rows are published again after the pause.
  const publishing = taskFailures(log, "outbox publish");
  async function publishAll(rows: OutboxRow[], signal: AbortSignal): Promise<boolean> {
    let pending = publishOrder(rows);
    while (pending.length > 0) {
      const outcome = await publishBatch(nats.js, events, pending);
      for (const [i, row] of outcome.acked.entries()) {
        const ms = outcome.ackedAt[i]! - row.created_at.getTime();
        latency.add(ms);
        for (const listener of latencyListeners) listener(ms);
      }
      counters.published += eventTotal(outcome.acked);
      counters.duplicates += eventTotal(outcome.duplicated);
      await marking;
      marking = markPublished(db, outcome.acked).catch((error: unknown) =>
        log.warn("outbox mark failed; the rows are published, but stay unpublished in the table", { error }),
      );
      if (outcome.error === undefined) {
        publishing.succeeded();
        return true;
      }
      const acked = new Set(outcome.acked);
      pending = pending.filter((row) => !acked.has(row));
      counters.failures += eventTotal(pending);
      publishing.failed(outcome.error, { failed: pending.length });
      await pause(publishing.delayMs(config.failureBackoffMs), signal);
      if (signal.aborted) return false;
    }
    return true;
  }

  /**
   * catchUp publishes the rows the table still holds unpublished (the first
   * start: nothing before "current" is skipped), shard by shard: a merchant's
   * rows are all on one shard, and readBatch's sizing by events is a
   * statement vtgate runs on one shard only. It stops at the largest
   * unpublished id it sees as it starts: every row committed before the
   * stream's start position is at or below it, and every row after it is in
   * the stream. Without that bound, writers faster than one batch per round
   * kept it reading the table (no position saved meanwhile, so a relay
   * killed then started over from "current").
   */
  async function catchUp(signal: AbortSignal): Promise<boolean> {
    for (const target of await shardTargets(db)) {
      const upTo = await lastUnpublished(target.db);
      while (upTo !== undefined) {
        const rows = await readBatch(target.db, config.batchSize, upTo);
        if (rows.length === 0) break;
        if (!(await publishAll(rows, signal))) return false;
        await marking; // the next read must not see these rows again
        if (eventTotal(rows) < config.batchSize) break;
      }
    }
    return true;
  }

  /**
   * follow streams from the given positions until the signal aborts or the
   * stream fails. A reader turns the stream into units, each a committed
   * transaction's outbox rows (often none: other tables' transactions) and
   * the position just after it; a publisher takes every unit queued (up to
   * a batch of rows), publishes their rows, and saves the last one's
   * position. While it publishes, the reader queues the next units, so
   * batches grow with the load as the polling relay's rounds do.
   */
  async function follow(start: ShardPosition[], bootstrap: boolean, store: PositionStore, session: AbortController): Promise<void> {
    /** events: how many events the unit's rows carry (a batch row counts its events). */
    const units: { rows: OutboxRow[]; events: number; position: ShardPosition[] }[] = [];
    let queuedEvents = 0;
    let readerDone = false;
    let readerError: unknown;
    let wake: () => void = () => {};
    let woken = new Promise<void>((resolve) => (wake = resolve));
    const signal = () => {
      wake();
      woken = new Promise<void>((resolve) => (wake = resolve));
    };

    lastEventAt = Date.now();
    const reader = (async () => {
      const fields = new Map<string, Field[]>();
      /** Rows of the transaction in progress, per shard (vtgate sends a shard's transactions whole). */
      const open = new Map<string, OutboxRow[]>();
      const inTransaction = new Set<string>();
      let position = start;
      const push = (rows: OutboxRow[]) => {
        const last = units.at(-1);
        // Consecutive empty transactions only move the position.
        const events = eventTotal(rows);
        if (rows.length === 0 && last && last.rows.length === 0) last.position = position;
        else units.push({ rows, events, position });
        queuedEvents += events;
      };
      try {
        for await (const response of streamOutbox(vtgate, start, session.signal)) {
          lastEventAt = Date.now();
          for (const event of response.events) {
            const shardKey = `${event.keyspace}/${event.shard}`;
            switch (event.type) {
              case VEventType.BEGIN:
                inTransaction.add(shardKey);
                open.set(shardKey, []);
                break;
              case VEventType.FIELD:
                if (event.fieldEvent) fields.set(shardKey, event.fieldEvent.fields);
                break;
              case VEventType.ROW: {
                const columns = fields.get(shardKey);
                for (const change of event.rowEvent?.rowChanges ?? []) {
                  // Inserts only: updates are the relay's marks, deletes the pruner's.
                  if (change.before !== undefined || change.after === undefined) continue;
                  if (!columns) throw new Error(`vstream: a ROW event of ${shardKey} before its FIELD event`);
                  const rows = open.get(shardKey) ?? [];
                  rows.push(toOutboxRow(decodeRow(columns, change.after)));
                  open.set(shardKey, rows);
                }
                break;
              }
              case VEventType.VGTID:
                // Inside a transaction it comes before the COMMIT, with every shard's position once the transaction is in.
                if (event.vgtid) position = event.vgtid.shardGtids.map((g) => ({ keyspace: g.keyspace, shard: g.shard, gtid: g.gtid }));
                if (!inTransaction.has(shardKey)) push([]); // a shard's stream starting: its first position
                break;
              case VEventType.COMMIT:
                push(open.get(shardKey) ?? []);
                open.delete(shardKey);
                inTransaction.delete(shardKey);
                break;
              case VEventType.ROLLBACK:
                open.delete(shardKey);
                inTransaction.delete(shardKey);
                break;
              case VEventType.JOURNAL:
                log.info("vstream relay: reshard journal; vtgate moves the stream to the new shards", { shard: shardKey });
                break;
              default:
                break;
            }
          }
          signal();
          prune();
          // Bounded memory: wait for the publisher when far ahead of it.
          while (queuedEvents > 4 * config.batchSize && !session.signal.aborted) await woken;
        }
        throw new Error("vstream ended");
      } catch (error) {
        if (!session.signal.aborted) readerError = error;
      } finally {
        readerDone = true;
        signal();
      }
    })();

    let saved = JSON.stringify(start);
    let savedAt = Date.now();
    /** The position after the units published so far (saved at most every IDLE_SAVE_MS while no rows move). */
    let published: ShardPosition[] | undefined;
    let needsCatchUp = bootstrap;
    let failed = false;
    const real = (p: ShardPosition[]) => p.length > 0 && p.every((s) => s.gtid !== "current");
    const save = async (force: boolean) => {
      if (published === undefined || !real(published)) return;
      const text = JSON.stringify(published);
      if (text === saved || (!force && Date.now() - savedAt < IDLE_SAVE_MS)) return;
      await store.save(published);
      saved = text;
      savedAt = Date.now();
    };
    try {
      // Stopping ends the reader; units it queued whole are still published and their position saved, so a restart republishes nothing.
      for (;;) {
        if (units.length === 0) {
          if (readerDone) break;
          await woken;
          continue;
        }
        if (needsCatchUp) {
          // Catch up only once every shard's start position is known, so nothing falls between the table and the stream.
          if (!real(units.at(-1)!.position)) {
            if (readerDone) break;
            await woken;
            continue;
          }
          log.info("vstream relay: no saved position; publishing the table's unpublished rows first");
          if (!(await catchUp(session.signal))) {
            failed = true;
            break;
          }
          needsCatchUp = false;
        }
        const taken: typeof units = [];
        let rows: OutboxRow[] = [];
        let events = 0;
        while (units.length > 0 && (events === 0 || events + units[0]!.events <= config.batchSize)) {
          const unit = units.shift()!;
          taken.push(unit);
          rows = rows.concat(unit.rows);
          events += unit.events;
        }
        queuedEvents -= events;
        signal(); // the reader may go on
        if (rows.length > 0 && !(await publishAll(rows, session.signal))) {
          failed = true; // stopped or deposed while a publish kept failing: the position stays before these rows
          break;
        }
        published = taken.at(-1)!.position;
        await save(rows.length > 0);
      }
      if (!failed && !needsCatchUp) await save(true);
    } finally {
      session.abort();
      signal();
      await reader;
      await marking;
    }
    if (readerError !== undefined && !stopping.signal.aborted) throw readerError;
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

  /**
   * run contends for the polling relay's lock of every shard of the keyspace
   * (outbox-relay:<keyspace>/<shard>), all on one vtgate session, and leads
   * while it holds them all; a shard it cannot lock within a second (a
   * polling relay, or another VStream relay, leads it) means trying again.
   */
  async function run(): Promise<void> {
    const rounds = taskFailures(log, "vstream relay round");
    while (!stopping.signal.aborted) {
      try {
        const shards = deps.lockName ? [] : (await keyspaceShards(db, keyspace)).map((shard) => `${keyspace}/${shard}`);
        const locks = deps.lockName ? [deps.lockName] : shards.map(lockNameOf);
        await db.connection().execute(async (conn) => {
          const held: string[] = [];
          try {
            rounds.succeeded();
            for (const lock of locks) {
              const got = await sql<Record<string, number | null>>`SELECT GET_LOCK(${lock}, 1) AS got`.execute(conn);
              // By position: vtgate names the column get_lock(...) whatever the alias.
              if (Number(Object.values(got.rows[0] ?? {})[0]) !== 1) return;
              held.push(lock);
            }
            leading = deps.lockName ? [keyspace] : shards;
            log.info("outbox relay leads (vstream)", { locks, keyspace });
            await lead(conn);
          } finally {
            leading = [];
            for (const lock of held) await sql`SELECT RELEASE_LOCK(${lock})`.execute(conn).catch(() => {});
          }
        });
      } catch (error) {
        rounds.failed(error);
        await pause(rounds.delayMs(config.failureBackoffMs), stopping.signal);
      }
    }
  }

  const running = untraced(run);
  return {
    stats: () => ({ leader: leading.length > 0, leading, ...counters, commitToPublish: latency.summary() }),
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
