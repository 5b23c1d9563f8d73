/** Mapping between webhook rows, events on the stream and the wire (stockroom.notify.v1). */
import { create, fromBinary, toJson, type DescMessage, type JsonValue, type Message } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { BulkJobEventSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { ProductEventSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import {
  WebhookDeliverySchema,
  WebhookDeliveryState,
  WebhookEndpointSchema,
  type WebhookDelivery,
  type WebhookEndpoint,
} from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import { OrderEventSchema } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { patternsOf, previousSecretValid, type DeliveryRow, type DeliveryState, type EndpointRow } from "./store.ts";

const STATE_TO_PROTO: Record<DeliveryState, WebhookDeliveryState> = {
  pending: WebhookDeliveryState.PENDING,
  delivered: WebhookDeliveryState.DELIVERED,
  dead: WebhookDeliveryState.DEAD,
};

export function endpointToProto(row: EndpointRow, now = new Date()): WebhookEndpoint {
  return create(WebhookEndpointSchema, {
    id: row.endpoint_id,
    url: row.url,
    eventTypes: patternsOf(row),
    description: row.description,
    createTime: timestampFromDate(row.created_at),
    updateTime: timestampFromDate(row.updated_at),
    previousSecretExpireTime: previousSecretValid(row, now) ? timestampFromDate(row.previous_secret_expires_at!) : undefined,
    consecutiveFailures: row.consecutive_failures,
    pausedUntil: row.paused_until && row.paused_until > now ? timestampFromDate(row.paused_until) : undefined,
  });
}

export function deliveryToProto(row: DeliveryRow): WebhookDelivery {
  return create(WebhookDeliverySchema, {
    id: row.delivery_id,
    endpointId: row.endpoint_id,
    eventId: row.event_id,
    eventType: row.event_type,
    state: STATE_TO_PROTO[row.state],
    attempts: row.attempts,
    lastStatusCode: row.last_status,
    lastError: row.last_error,
    payload: row.payload,
    createTime: timestampFromDate(row.created_at),
    lastAttemptTime: row.last_attempt_at ? timestampFromDate(row.last_attempt_at) : undefined,
  });
}

/**
 * EVENT_SCHEMAS maps an outbox aggregate type (the relay's
 * Stockroom-Aggregate-Type header) to the message its events carry.
 */
const EVENT_SCHEMAS: Record<string, DescMessage> = {
  product: ProductEventSchema,
  order: OrderEventSchema,
  bulk_job: BulkJobEventSchema,
};

/** StreamEvent is what the intake knows of one event from the stream. */
export interface StreamEvent {
  eventId: string;
  merchantId: string;
  eventType: string;
  aggregateType: string;
  /** When the change was made (the relay's Stockroom-Event-Time header). */
  occurTime: Date;
  data: Uint8Array;
  /** The event message, when already decoded (an event taken out of a batch); otherwise data is decoded. */
  message?: Message;
}

/** WebhookPayload is the JSON body every endpoint receives. */
export interface WebhookPayload {
  id: string;
  type: string;
  merchantId: string;
  occurTime: string;
  data: JsonValue;
}

/**
 * webhookPayload decodes an event and wraps it in the webhook envelope;
 * data is the event message's proto3 JSON. It throws for an aggregate type
 * it does not know or a payload that does not decode.
 */
export function webhookPayload(event: StreamEvent): WebhookPayload {
  const schema = EVENT_SCHEMAS[event.aggregateType];
  if (!schema) throw new Error(`no webhook payload for aggregate type "${event.aggregateType}"`);
  const message = event.message ?? fromBinary(schema, event.data);
  const occur = (message as { occurTime?: Timestamp }).occurTime;
  return {
    id: event.eventId,
    type: event.eventType,
    merchantId: event.merchantId,
    occurTime: (occur ? timestampDate(occur) : event.occurTime).toISOString(),
    data: toJson(schema, message),
  };
}
