import { context, propagation } from "@opentelemetry/api";
import type { Transaction } from "kysely";
import type { CommonTables } from "./schema.ts";

export interface OutboxEvent {
  merchantId: string;
  eventId: string;
  aggregateType: "product" | "order" | "bulk_job";
  aggregateId: string;
  aggregateVersion: number;
  /** e.g. "product.updated"; the relay publishes on catalog.<merchant>.<event_type>. */
  eventType: string;
  /** The serialized event message (e.g. stockroom.catalog.v1.ProductEvent). */
  payload: Uint8Array;
  createdAt: Date;
}

/**
 * appendOutbox writes events in the caller's transaction, so they commit or
 * roll back with the change they describe. The active trace context is kept
 * so the relay's publish joins the trace of the change.
 */
export async function appendOutbox(trx: Transaction<CommonTables>, events: OutboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const traceContext = Object.keys(carrier).length > 0 ? JSON.stringify(carrier) : null;
  await trx
    .insertInto("outbox_events")
    .values(
      events.map((e) => ({
        merchant_id: e.merchantId,
        event_id: e.eventId,
        aggregate_type: e.aggregateType,
        aggregate_id: e.aggregateId,
        aggregate_version: e.aggregateVersion,
        event_type: e.eventType,
        payload: Buffer.from(e.payload),
        trace_context: traceContext,
        created_at: e.createdAt,
      })),
    )
    .execute();
}
