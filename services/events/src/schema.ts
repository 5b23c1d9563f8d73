import type { Generated } from "kysely";

/** The events package's tables, keyed by merchant_id first (Vitess primary vindex). */
export interface EventTables {
  /** Events written in the transaction of the change they describe (outbox.ts); the relay publishes and prunes them. */
  outbox_events: {
    merchant_id: string;
    event_id: string;
    aggregate_type: string;
    aggregate_id: string;
    aggregate_version: number;
    event_type: string;
    payload: Buffer;
    trace_context: string | null;
    created_at: Date;
    /** How many events the payload holds: 1, or a batch's size (stockroom.catalog.v1.ProductEventBatch). */
    event_count: Generated<number>;
    published_at: Generated<Date | null>;
  };
}
