import type { Generated } from "kysely";

/** Tables shared by every service, all keyed by merchant_id first (Vitess primary vindex). */
export interface CommonTables {
  merchants: {
    merchant_id: string;
    name: string;
    created_at: Date;
  };
  api_keys: {
    merchant_id: string;
    key_id: string;
    secret_sha256: Buffer;
    label: string;
    created_at: Date;
    revoked_at: Date | null;
  };
  idempotency_keys: {
    merchant_id: string;
    request_id: string;
    method: string;
    request_sha256: Buffer;
    response: Buffer | null;
    created_at: Date;
  };
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
    published_at: Generated<Date | null>;
  };
}
