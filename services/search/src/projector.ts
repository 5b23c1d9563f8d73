/**
 * The search projector: applies the catalog's events (catalog.> on the event
 * stream) to search_documents through one durable consumer that any number
 * of processes share. Events are applied in micro-batches (one multi-row
 * guarded upsert for the events that arrived together; each event is acked
 * only after its batch commits), and the guard makes order irrelevant: a
 * redelivered, duplicated or overtaken event never moves a row back
 * (store.ts upsertEntries).
 */
import { domainSubjects, ensureEventConsumer, EVENT_HEADERS, PRODUCT_EVENT_BATCH, type EventStreamConfig } from "@stockroom/events";
import { createLatencyWindow, type LatencySummary, type Logger } from "@stockroom/common/observe";
import { consumeWorkQueue, type NatsDeps, type WorkMessage } from "@stockroom/common/nats";
import { decodeProductEvent, decodeProductEventBatch, type DecodedEvent } from "./event-decode.ts";
import { upsertEntries, type SearchDb, type SearchEntry } from "./store.ts";

export interface ProjectorConfig {
  durable: string;
  /** Events this process applies at once. */
  concurrency: number;
  ackWaitMs: number;
  /** Events handed out and not yet applied, across all processes. */
  maxAckPending: number;
}

export const DEFAULT_PROJECTOR: ProjectorConfig = {
  durable: "search-projector",
  // Events in flight are cheap (each waits for its batch's upsert): many in
  // flight make big batches, and one multi-row upsert per batch is what
  // keeps up with a bulk job (one upsert per event managed ~300 events/s).
  concurrency: 256,
  ackWaitMs: 30_000,
  maxAckPending: 512,
};

export interface ProjectorDeps {
  db: SearchDb;
  nats: NatsDeps;
  events: EventStreamConfig;
  config: ProjectorConfig;
  log: Logger;
}

export interface ProjectorStats {
  /** Events applied (or found already applied) by this process. */
  applied: number;
  /** Events that describe no product and were dropped (logged). */
  rejected: number;
  /** The change time of the newest event this process applied. */
  lastEventTime: Date | undefined;
  /** From the change (just before its commit) to its row being written here, over recent events. */
  commitToVisible: LatencySummary;
}

export interface ProjectionLag {
  /** Catalog messages published and not yet applied (all merchants); a batch message counts once. */
  pendingEvents: number;
  /** An upper bound on the age of the oldest of them; 0 when there are none. */
  lagMs: number;
}

export interface SearchProjector {
  stats(): ProjectorStats;
  lag(): Promise<ProjectionLag>;
  /** stop pulls no more events and waits for the ones being applied. */
  stop(): Promise<void>;
}

/** startSearchProjector creates the stream (if the relay has not yet) and the durable consumer, then applies events until stopped. */
export async function startSearchProjector(deps: ProjectorDeps): Promise<SearchProjector> {
  const { db, nats, events, config, log } = deps;
  await ensureEventConsumer(nats.jsm, events, {
    durable: config.durable,
    ackWaitMs: config.ackWaitMs,
    maxAckPending: config.maxAckPending,
    filterSubject: domainSubjects(events, "catalog"),
  });
  const latency = createLatencyWindow();
  const batcher = createBatcher<SearchEntry>((entries) => upsertEntries(db, entries), { maxSize: 500, maxDelayMs: 5 });
  const stats = { applied: 0, rejected: 0, lastEventTime: undefined as Date | undefined };

  const applied = (events: readonly DecodedEvent[]) => {
    const now = Date.now();
    stats.applied += events.length;
    for (const event of events) {
      if (event.occurMs === undefined) continue;
      latency.add(now - event.occurMs);
      if (!stats.lastEventTime || event.occurMs > stats.lastEventTime.getTime()) stats.lastEventTime = new Date(event.occurMs);
    }
  };
  const reject = (msg: WorkMessage, error: unknown, eventId = msg.headers["Nats-Msg-Id"]) => {
    // Redelivering cannot make it valid; a reindex repairs whatever it described.
    stats.rejected++;
    log.error("catalog event rejected", { subject: msg.subject, eventId, error });
  };

  /**
   * A batch (a bulk chunk's events) is one multi-row upsert of its own, acked
   * when it commits; an event of it that describes no product is dropped
   * alone (logged), the others are applied.
   */
  const applyBatch = async (msg: WorkMessage) => {
    let events: DecodedEvent[];
    try {
      events = decodeProductEventBatch(msg.data);
    } catch (error) {
      reject(msg, error);
      return;
    }
    const entries: SearchEntry[] = [];
    const good: DecodedEvent[] = [];
    for (const event of events) {
      if (event.entry) {
        entries.push(event.entry);
        good.push(event);
      } else reject(msg, event.error, event.eventId);
    }
    await upsertEntries(db, entries);
    applied(good);
  };

  const apply = async (msg: WorkMessage) => {
    if (msg.headers[EVENT_HEADERS.eventType] === PRODUCT_EVENT_BATCH) return applyBatch(msg);
    let event: DecodedEvent;
    try {
      event = decodeProductEvent(msg.data);
    } catch (error) {
      reject(msg, error);
      return;
    }
    if (!event.entry) return reject(msg, event.error);
    await batcher.add(event.entry);
    applied([event]);
  };
  const consumer = consumeWorkQueue(
    nats,
    {
      stream: events.stream,
      durable: config.durable,
      concurrency: config.concurrency,
      log,
      retryBackoff: { initialMs: 250, maxMs: 30_000 },
    },
    apply,
    // Unreachable: ensureEventConsumer retries forever; kept to satisfy the consumer's contract.
    async (msg, error) => log.error("catalog event given up", { subject: msg.subject, error }),
  );
  return {
    stats: () => ({ ...stats, commitToVisible: latency.summary() }),
    lag: () => projectionLag(nats.jsm, events.stream, config.durable),
    stop: () => consumer.stop(),
  };
}

/**
 * createBatcher gathers items added within maxDelayMs (or up to maxSize) and
 * writes them with one call; each add resolves or rejects with its batch.
 */
export function createBatcher<T>(write: (items: T[]) => Promise<void>, options: { maxSize: number; maxDelayMs: number }) {
  let items: T[] = [];
  let waiters: { resolve: () => void; reject: (error: unknown) => void }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    clearTimeout(timer);
    timer = undefined;
    const batch = items;
    const settle = waiters;
    items = [];
    waiters = [];
    write(batch).then(
      () => {
        for (const w of settle) w.resolve();
      },
      (error: unknown) => {
        for (const w of settle) w.reject(error);
      },
    );
  };
  return {
    add(item: T): Promise<void> {
      return new Promise<void>((resolve, reject) => {
        items.push(item);
        waiters.push({ resolve, reject });
        if (items.length >= options.maxSize) flush();
        else timer ??= setTimeout(flush, options.maxDelayMs);
      });
    },
  };
}

/**
 * projectionLag reads the consumer's counters and, when events are pending,
 * the publish time of the first message after its ack floor: every event
 * published before then has been applied. That message may belong to
 * another domain and be older than the first pending catalog event, hence
 * "upper bound".
 */
export async function projectionLag(jsm: NatsDeps["jsm"], stream: string, durable: string): Promise<ProjectionLag> {
  const [consumer, info] = await Promise.all([jsm.consumers.info(stream, durable), jsm.streams.info(stream)]);
  const pendingEvents = consumer.num_pending + consumer.num_ack_pending;
  if (pendingEvents === 0) return { pendingEvents, lagMs: 0 };
  const seq = Math.max(consumer.ack_floor.stream_seq + 1, info.state.first_seq);
  const oldest = await jsm.streams.getMessage(stream, { seq });
  return { pendingEvents, lagMs: oldest ? Math.max(0, Date.now() - oldest.time.getTime()) : 0 };
}
