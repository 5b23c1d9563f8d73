import { context, propagation } from "@opentelemetry/api";
import type { Transaction } from "kysely";
import { asBuffer } from "@stockroom/common";
import { insertRows } from "@stockroom/common/db";
import type { EventTables } from "./schema.ts";

export interface OutboxEvent {
  merchantId: string;
  /**
   * A ULID. The relay publishes in event id order, so an aggregate's later
   * versions need greater ids, also across hosts (see the catalog's changeTime).
   */
  eventId: string;
  /** Picks the subject domain (event-stream.ts EVENT_DOMAINS). */
  aggregateType: "product" | "order" | "bulk_job";
  aggregateId: string;
  aggregateVersion: number;
  /** e.g. "product.updated"; the relay publishes on <domain>.<merchant>.<event_type>, e.g. catalog.<merchant>.product.updated. */
  eventType: string;
  /** The serialized event message (e.g. stockroom.catalog.v1.ProductEvent). */
  payload: Uint8Array;
  createdAt: Date;
  /**
   * How many events payload holds when it is a batch (BATCH_EVENT_TYPES);
   * 1, or absent, for a single event. The relay publishes a batch as one
   * message and, within a round, after every earlier row of its merchant and
   * before every later one (it cannot see which aggregates it holds).
   */
  eventCount?: number;
}

/**
 * appendOutbox writes events in the caller's transaction, so they commit or
 * roll back with the change they describe. The active trace context is kept
 * so the relay's publish joins the trace of the change.
 */
export async function appendOutbox(trx: Transaction<EventTables>, events: OutboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const traceContext = Object.keys(carrier).length > 0 ? JSON.stringify(carrier) : null;
  await insertRows(
    trx,
    "outbox_events",
    events.map((e) => ({
      merchant_id: e.merchantId,
      event_id: e.eventId,
      aggregate_type: e.aggregateType,
      aggregate_id: e.aggregateId,
      aggregate_version: e.aggregateVersion,
      event_type: e.eventType,
      // A view, not a copy: a bulk chunk's batch payload is up to 512 KiB.
      payload: asBuffer(e.payload),
      trace_context: traceContext,
      created_at: e.createdAt,
      event_count: e.eventCount ?? 1,
    })),
    // Nothing reads an outbox insert's result: it rides with the transaction's next statement.
    { deferred: true },
  );
}
