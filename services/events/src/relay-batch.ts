/**
 * The outbox relay's steps, each one statement or one round of publishes:
 * read the oldest unpublished rows, publish them, mark the acknowledged ones,
 * prune old published rows. relay.ts runs them in a loop under a lock.
 */
import type { JetStreamClient } from "@nats-io/jetstream";
import { sql, type Kysely, type Selectable, type Transaction } from "kysely";
import { isVitessCached } from "@stockroom/common/db";
import { EVENT_HEADERS, eventSubject, type EventStreamConfig } from "./event-stream.ts";
import { publishWithId } from "@stockroom/common/nats";
import { restoreTraceContext } from "@stockroom/common/observe";
import type { EventTables } from "./schema.ts";

export type OutboxRow = Omit<Selectable<EventTables["outbox_events"]>, "published_at">;
type OutboxDb = Kysely<EventTables>;

/**
 * readBatch returns the oldest unpublished rows, oldest event id first (the
 * (published_at, event_id) index gives them in order), holding up to
 * `maxEvents` events: a row carrying a batch counts its events, and the first
 * row is returned whatever it holds. A round of bulk batches so reads one or
 * a few rows (each up to 512 KiB), not hundreds. Two statements: the ids and
 * event counts of the oldest maxEvents rows, then the rows up to the last id
 * that fits (a window function would do it in one, but vttablet's parser
 * refuses SUM() OVER). The second read is one consistent read: if it sees
 * version N+1 of an aggregate it also sees version N, which committed before
 * N+1 could lock the aggregate's row and has a smaller id. `upTo`, when
 * given, leaves out rows with a larger event id.
 */
export async function readBatch(db: OutboxDb, maxEvents: number, upTo?: string): Promise<OutboxRow[]> {
  let ids = db.selectFrom("outbox_events").select(["event_id", "event_count"]).where("published_at", "is", null);
  if (upTo !== undefined) ids = ids.where("event_id", "<=", upTo);
  const head = await ids.orderBy("event_id").limit(maxEvents).execute();
  if (head.length === 0) return [];
  const fits = takeEvents(head, maxEvents);
  const rows = await db
    .selectFrom("outbox_events")
    .select([
      "merchant_id",
      "event_id",
      "aggregate_type",
      "aggregate_id",
      "aggregate_version",
      "event_type",
      "payload",
      "trace_context",
      "created_at",
      "event_count",
    ])
    .where("published_at", "is", null)
    .where("event_id", "<=", fits.at(-1)!.event_id)
    .orderBy("event_id")
    .limit(fits.length)
    .execute();
  // A row committed between the reads with an id in that range (a writer's clock behind) takes a place: still within maxEvents.
  return takeEvents(rows, maxEvents);
}

/** lastUnpublished is the largest event id of the unpublished rows, or undefined when there are none. */
export async function lastUnpublished(db: OutboxDb): Promise<string | undefined> {
  const row = await db
    .selectFrom("outbox_events")
    .select("event_id")
    .where("published_at", "is", null)
    .orderBy("event_id", "desc")
    .limit(1)
    .executeTakeFirst();
  return row?.event_id;
}

/** eventCount is how many events a row carries (a batch's size, otherwise 1). */
export function eventCount(row: Pick<OutboxRow, "event_count">): number {
  return Number(row.event_count ?? 1);
}

/** takeEvents is the longest prefix of rows holding at most maxEvents events, and at least the first row. */
export function takeEvents<T extends Pick<OutboxRow, "event_count">>(rows: readonly T[], maxEvents: number): T[] {
  let n = 0;
  let i = 0;
  for (; i < rows.length; i++) {
    n += eventCount(rows[i]!);
    if (n > maxEvents && i > 0) break;
  }
  return rows.slice(0, i);
}

/** eventTotal is how many events rows carry. */
export function eventTotal(rows: readonly Pick<OutboxRow, "event_count">[]): number {
  let n = 0;
  for (const row of rows) n += eventCount(row);
  return n;
}

/** aggregateKey names the aggregate whose events must stay in version order. */
function aggregateKey(row: OutboxRow): string {
  return `${row.merchant_id}/${row.aggregate_type}/${row.aggregate_id}`;
}

/**
 * publishOrder keeps the batch in event id order except that each
 * aggregate's events are put in version order within the places they
 * occupy. Event ids come from clocks: two writers on hosts whose clocks
 * differ can give version N+1 the smaller id. Within one batch this repairs
 * that whatever the writer; across batches the writer's ids must already
 * increase per aggregate (the catalog's do: see changeTime in its domain).
 */
export function publishOrder(rows: readonly OutboxRow[]): OutboxRow[] {
  const byAggregate = new Map<string, OutboxRow[]>();
  for (const row of rows) {
    const list = byAggregate.get(aggregateKey(row));
    if (list) list.push(row);
    else byAggregate.set(aggregateKey(row), [row]);
  }
  for (const list of byAggregate.values()) list.sort((a, b) => Number(a.aggregate_version) - Number(b.aggregate_version));
  const next = new Map<string, number>();
  return rows.map((row) => {
    const key = aggregateKey(row);
    const i = next.get(key) ?? 0;
    next.set(key, i + 1);
    return byAggregate.get(key)![i]!;
  });
}

export interface PublishOutcome {
  /** Rows JetStream acknowledged (stored now or already within the duplicate window), in publish order. */
  acked: OutboxRow[];
  /** The acked rows JetStream reported as duplicates (already stored within the duplicate window). */
  duplicated: OutboxRow[];
  /** When each acked row was acknowledged (Date.now()), for latency. */
  ackedAt: number[];
  /** The first publish error, when some rows were not acknowledged. */
  error?: unknown;
}

/**
 * publishBatch publishes the rows in order with many publishes in flight,
 * except that an aggregate's next event is sent only after its previous one
 * was acknowledged, and not at all if that one failed. One connection keeps
 * send order, so the stream stores each aggregate's events in version order
 * even when a publish fails halfway through a batch: the failed row and its
 * aggregate's later rows stay unpublished and come first in the next batch.
 * A row carrying a batch of events holds aggregates the relay cannot see, so
 * it is a barrier for its merchant: sent once every earlier row of the
 * merchant was acknowledged, and every later one only after it.
 */
export async function publishBatch(js: JetStreamClient, events: EventStreamConfig, rows: readonly OutboxRow[]): Promise<PublishOutcome> {
  const outcome: PublishOutcome = { acked: [], duplicated: [], ackedAt: [] };
  const chains = new Map<string, Promise<boolean>>();
  /** Per merchant: its last batch row, and the rows sent since (which the next batch row waits for). */
  const merchants = new Map<string, { barrier: Promise<boolean>; since: Promise<boolean>[] }>();
  const results = rows.map((row) => {
    const key = aggregateKey(row);
    let merchant = merchants.get(row.merchant_id);
    if (!merchant) {
      merchant = { barrier: Promise.resolve(true), since: [] };
      merchants.set(row.merchant_id, merchant);
    }
    const batch = eventCount(row) > 1;
    const waitFor = batch ? [merchant.barrier, ...merchant.since] : [merchant.barrier, chains.get(key) ?? Promise.resolve(true)];
    const previous = Promise.all(waitFor).then((oks) => oks.every(Boolean));
    const done = previous.then(async (ok) => {
      if (!ok) return false;
      try {
        const { duplicate } = await publishRow(js, events, row);
        outcome.acked.push(row);
        outcome.ackedAt.push(Date.now());
        if (duplicate) outcome.duplicated.push(row);
        return true;
      } catch (error) {
        outcome.error ??= error;
        return false;
      }
    });
    chains.set(key, done);
    if (batch) {
      merchant.barrier = done;
      merchant.since = [];
    } else merchant.since.push(done);
    return done;
  });
  await Promise.all(results);
  return outcome;
}

/** publishRow publishes one row in the trace of the change that wrote it. */
function publishRow(js: JetStreamClient, events: EventStreamConfig, row: OutboxRow) {
  const subject = eventSubject(events, row);
  const destinationTemplate = eventSubject(events, { ...row, merchant_id: "{merchant}" });
  const headers = {
    [EVENT_HEADERS.merchant]: row.merchant_id,
    [EVENT_HEADERS.eventType]: row.event_type,
    [EVENT_HEADERS.aggregateType]: row.aggregate_type,
    [EVENT_HEADERS.aggregateId]: row.aggregate_id,
    [EVENT_HEADERS.aggregateVersion]: String(row.aggregate_version),
    [EVENT_HEADERS.eventTime]: row.created_at.toISOString(),
    ...(eventCount(row) > 1 ? { [EVENT_HEADERS.eventCount]: String(eventCount(row)) } : {}),
  };
  const parent = restoreTraceContext(row.trace_context);
  return publishWithId(js, subject, row.payload, row.event_id, headers, { parent, destinationTemplate });
}

/**
 * markPublished stamps the rows with the database's clock, which pruning
 * compares against too: one statement per merchant (a primary-key range;
 * MariaDB spends seconds planning an UPDATE whose IN list holds 500
 * (merchant, event) pairs), all in one transaction, so one commit.
 */
export async function markPublished(db: OutboxDb, rows: readonly OutboxRow[]): Promise<void> {
  const byMerchant = new Map<string, string[]>();
  for (const r of rows) {
    const ids = byMerchant.get(r.merchant_id);
    if (ids) ids.push(r.event_id);
    else byMerchant.set(r.merchant_id, [r.event_id]);
  }
  if (byMerchant.size === 0) return;
  const mark = async (q: OutboxDb | Transaction<EventTables>) => {
    for (const [merchantId, eventIds] of byMerchant) {
      await q
        .updateTable("outbox_events")
        .set({ published_at: sql`NOW(3)` })
        .where("merchant_id", "=", merchantId)
        .where("event_id", "in", eventIds)
        .execute();
    }
  };
  // On Vitess the merchants' rows are on several shards, and one transaction may not span shards: each
  // statement commits alone there (a mark lost to a crash only republishes events JetStream deduplicates).
  if (byMerchant.size > 1 && (await isVitessCached(db))) await mark(db);
  else await db.transaction().execute(mark);
}

/** pruneOutbox deletes rows published more than retentionMs ago, `batch` rows per statement; it returns how many. */
export async function pruneOutbox(db: OutboxDb, retentionMs: number, batch = 1000): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await sql`
      DELETE FROM outbox_events
      WHERE published_at < NOW(3) - INTERVAL ${retentionMs * 1000} MICROSECOND
      ORDER BY published_at LIMIT ${batch}`.execute(db);
    const deleted = Number(result.numAffectedRows ?? 0n);
    total += deleted;
    if (deleted < batch) return total;
  }
}
