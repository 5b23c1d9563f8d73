import type { Generated } from "kysely";

/** Tables shared by every service, all keyed by merchant_id first (Vitess primary vindex). */
export interface CommonTables {
  merchants: {
    merchant_id: string;
    name: string;
    created_at: Date;
    /** Service tier (metrics.ts TIERS): labels RPC latency metrics; SLOs are set per tier. */
    tier: Generated<string>;
  };
  api_keys: {
    merchant_id: string;
    key_id: string;
    secret_sha256: Buffer;
    label: string;
    created_at: Date;
    revoked_at: Date | null;
    /** Who created the key (Principal.actor, or "operator" for the api-key tool); NULL for keys from before 2026-12-05 and merchants' first keys. */
    created_by: string | null;
    /** Who revoked it, likewise. */
    revoked_by: string | null;
  };
  idempotency_keys: {
    merchant_id: string;
    request_id: string;
    method: string;
    request_sha256: Buffer;
    response: Buffer | null;
    created_at: Date;
  };
  /** Per-minute call statistics per merchant, method and process (sla.ts). */
  rpc_call_minutes: {
    merchant_id: string;
    minute_start: Date;
    method: string;
    instance_id: string;
    calls: number;
    client_errors: number;
    server_errors: number;
    /** JSON object: log-bucket index → calls (sla.ts bucketOf). */
    latency_buckets: string;
  };
}
