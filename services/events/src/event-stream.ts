/**
 * The event stream contract between the outbox relay and its consumers:
 * which stream, which subjects, which headers. Subjects are
 * `<domain>.<merchant>.<event_type>`, e.g. `catalog.01J….product.updated`,
 * so a consumer filters by domain (`catalog.>`) or by merchant
 * (`catalog.01J….>`). A prefix in front of everything lets tests share one
 * NATS server.
 */
import type { JetStreamManager } from "@nats-io/jetstream";
import { ensureDurableConsumer, ensureEventStream } from "@stockroom/common/nats";
import type { OutboxEvent } from "./outbox.ts";

export interface EventStreamConfig {
  stream: string;
  /** A subject token put in front of every subject (empty in production). */
  subjectPrefix: string;
  /** Must outlast any relay stall: a row republished within it is stored once. */
  duplicateWindowMs: number;
  /** How long events stay; a consumer further behind than this needs a reindex. */
  maxAgeMs: number;
  replicas: number;
}

export const DEFAULT_EVENT_STREAM: EventStreamConfig = {
  stream: "STOCKROOM_EVENTS",
  subjectPrefix: "",
  duplicateWindowMs: 10 * 60_000,
  maxAgeMs: 7 * 24 * 3600_000,
  replicas: 1,
};

/**
 * EVENT_DOMAINS maps an outbox aggregate type to its subject domain. The
 * Record type makes a new aggregate type a compile error here rather than
 * a row the relay cannot route. ("bulk" itself is taken by the chunk work
 * queue's subjects, and streams may not overlap.)
 */
export const EVENT_DOMAINS: Record<OutboxEvent["aggregateType"], string> = {
  product: "catalog",
  order: "orders",
  bulk_job: "bulk_jobs",
};

/** Header names the relay sets besides Nats-Msg-Id (the event id) and the W3C trace context. */
export const EVENT_HEADERS = {
  merchant: "Stockroom-Merchant",
  eventType: "Stockroom-Event-Type",
  aggregateType: "Stockroom-Aggregate-Type",
  aggregateId: "Stockroom-Aggregate-Id",
  aggregateVersion: "Stockroom-Aggregate-Version",
  /** When the change was made (ISO 8601), i.e. just before its commit. */
  eventTime: "Stockroom-Event-Time",
  /** Only on a message carrying a batch of events (PRODUCT_EVENT_BATCH): how many. */
  eventCount: "Stockroom-Event-Count",
} as const;

/**
 * PRODUCT_EVENT_BATCH is the event type of a message carrying many product
 * events as one stockroom.catalog.v1.ProductEventBatch (a bulk chunk's), on
 * catalog.<merchant>.product.batch. Every consumer of catalog events takes
 * both shapes; the batch's message id is its own, each event inside keeps
 * its event id and version.
 */
export const PRODUCT_EVENT_BATCH = "product.batch";

/** domainSubjects is the wildcard covering one domain's events, e.g. "catalog.>" (a consumer's filter). */
export function domainSubjects(config: EventStreamConfig, domain: string): string {
  return join(config.subjectPrefix, domain, ">");
}

/** eventSubject is where the relay publishes one outbox row. */
export function eventSubject(config: EventStreamConfig, row: { aggregate_type: string; merchant_id: string; event_type: string }): string {
  const domain = EVENT_DOMAINS[row.aggregate_type as OutboxEvent["aggregateType"]];
  if (!domain) throw new Error(`outbox aggregate type "${row.aggregate_type}" has no event domain`);
  return join(config.subjectPrefix, domain, row.merchant_id, row.event_type);
}

/** ensureEvents creates or updates the event stream with a subject for every domain. */
export function ensureEvents(jsm: JetStreamManager, config: EventStreamConfig): Promise<void> {
  return ensureEventStream(jsm, {
    stream: config.stream,
    subjects: Object.values(EVENT_DOMAINS).map((d) => domainSubjects(config, d)),
    duplicateWindowMs: config.duplicateWindowMs,
    maxAgeMs: config.maxAgeMs,
    replicas: config.replicas,
  });
}

/**
 * ensureEventConsumer makes sure the event stream exists (the relay may not
 * have started yet) and a durable consumer of it that retries forever: a
 * consumer's outage (its database down) must delay events, never drop them.
 */
export async function ensureEventConsumer(
  jsm: JetStreamManager,
  config: EventStreamConfig,
  consumer: { durable: string; ackWaitMs: number; maxAckPending: number; filterSubject?: string },
): Promise<void> {
  await ensureEvents(jsm, config);
  await ensureDurableConsumer(jsm, config.stream, { ...consumer, maxDeliver: -1 });
}

function join(...tokens: string[]): string {
  return tokens.filter((t) => t !== "").join(".");
}
