/**
 * The intake: turns each event on the stream into one delivery row per
 * matching endpoint of its merchant, then lets JetStream forget it. It only
 * writes rows, so a slow endpoint never holds up the stream.
 */
import { fromBinary } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ChangeType, ProductEventBatchSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { EVENT_HEADERS, PRODUCT_EVENT_BATCH } from "@stockroom/events";
import type { Logger } from "@stockroom/common/observe";
import type { WorkMessage } from "@stockroom/common/nats";
import { newUlid } from "@stockroom/common";
import { webhookPayload, type StreamEvent } from "./convert.ts";
import { insertDeliveries } from "./deliveries.ts";
import { matchesPatterns } from "./domain.ts";
import { endpointFilters, patternsOf, type NotifyDb, type WebhookDeliveryRow } from "./store.ts";

/** streamEvent reads an event's identity from the relay's headers; undefined if it has none. */
export function streamEvent(msg: WorkMessage): StreamEvent | undefined {
  const h = msg.headers;
  const eventId = h["Nats-Msg-Id"];
  const merchantId = h[EVENT_HEADERS.merchant];
  const eventType = h[EVENT_HEADERS.eventType];
  const aggregateType = h[EVENT_HEADERS.aggregateType];
  if (!eventId || !merchantId || !eventType || !aggregateType) return undefined;
  const at = new Date(h[EVENT_HEADERS.eventTime] ?? "");
  return { eventId, merchantId, eventType, aggregateType, occurTime: Number.isNaN(at.getTime()) ? new Date() : at, data: msg.data };
}

const CHANGE_TYPES: Record<number, string> = {
  [ChangeType.CREATED]: "product.created",
  [ChangeType.UPDATED]: "product.updated",
  [ChangeType.DELETED]: "product.deleted",
};

/**
 * unbatch turns a message carrying a batch of product events
 * (PRODUCT_EVENT_BATCH) into the events it carries, each with its own id,
 * type and time, exactly as the relay publishes a single one; any other
 * message is its one event. It throws on a batch that does not decode.
 */
export function unbatch(event: StreamEvent): StreamEvent[] {
  if (event.eventType !== PRODUCT_EVENT_BATCH) return [event];
  return fromBinary(ProductEventBatchSchema, event.data).events.map((e) => {
    const eventType = CHANGE_TYPES[e.type];
    if (!eventType || e.eventId === "") throw new Error(`batch ${event.eventId} holds an event without id or type`);
    return {
      eventId: e.eventId,
      merchantId: event.merchantId,
      eventType,
      aggregateType: "product",
      occurTime: e.occurTime ? timestampDate(e.occurTime) : event.occurTime,
      data: new Uint8Array(0),
      message: e,
    };
  });
}

/** Delivery rows per INSERT: well within the 65,535 placeholders of one statement at 14 columns. */
const DELIVERY_ROWS_PER_INSERT = 1000;

export interface IntakeResult {
  /** Delivery rows written (or found already written). */
  deliveries: number;
  /** Why the event was dropped, when it was. */
  dropped?: string;
}

/**
 * recordEvent writes the deliveries of one event, or of each event of a
 * batch (endpoints subscribe to product events, never to batches). An endpoint gets only
 * events of changes made after it was created: a new dispatcher consumer
 * starts at the beginning of the stream, and a new endpoint must not
 * receive a week of history. A redelivered event finds its rows and adds
 * none (uq_webhook_deliveries_event).
 */
export async function recordEvent(db: NotifyDb, msg: WorkMessage, now: Date, maxAgeMs: number): Promise<IntakeResult> {
  const received = streamEvent(msg);
  if (!received) return { deliveries: 0, dropped: "missing Stockroom-* headers" };
  const subscribed = (await endpointFilters(db, received.merchantId)).filter((e) => e.created_at <= received.occurTime);
  if (subscribed.length === 0) return { deliveries: 0 };
  let events: StreamEvent[];
  try {
    events = unbatch(received);
  } catch (error) {
    return { deliveries: 0, dropped: `undecodable batch: ${(error as Error).message}` };
  }
  const rows: WebhookDeliveryRow[] = [];
  for (const event of events) {
    const endpoints = subscribed.filter((e) => e.created_at <= event.occurTime && matchesPatterns(patternsOf(e), event.eventType));
    if (endpoints.length === 0) continue;
    let body: string;
    try {
      body = JSON.stringify(webhookPayload(event));
    } catch (error) {
      return { deliveries: 0, dropped: `undecodable payload: ${(error as Error).message}` };
    }
    for (const e of endpoints) {
      rows.push({
        merchant_id: event.merchantId,
        delivery_id: newUlid(now.getTime()),
        endpoint_id: e.endpoint_id,
        event_id: event.eventId,
        event_type: event.eventType,
        payload: body,
        state: "pending",
        attempts: 0,
        next_attempt_at: now,
        expires_at: new Date(now.getTime() + maxAgeMs),
        last_attempt_at: null,
        last_status: 0,
        last_error: "",
        created_at: now,
      });
    }
  }
  for (let i = 0; i < rows.length; i += DELIVERY_ROWS_PER_INSERT) await insertDeliveries(db, rows.slice(i, i + DELIVERY_ROWS_PER_INSERT));
  return { deliveries: rows.length };
}

/** logDrop reports an event the intake could not use; redelivering would not help, so it is acknowledged. */
export function logDrop(log: Logger, msg: WorkMessage, reason: string): void {
  log.error("event dropped by the webhook intake", { subject: msg.subject, eventId: msg.headers["Nats-Msg-Id"], reason });
}
