import { sql, type Kysely } from "kysely";

// Per-minute call statistics per merchant and method, written by each API
// process (sla.ts) for the SLA report: calls, errors and a latency histogram
// (JSON, sparse log buckets) that percentiles are computed from. One row per
// process (instance_id), so processes never merge into one another's rows.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE rpc_call_minutes (
      merchant_id VARCHAR(26) NOT NULL,
      minute_start DATETIME NOT NULL,
      method VARCHAR(128) NOT NULL,
      instance_id VARCHAR(64) NOT NULL,
      calls INT NOT NULL,
      client_errors INT NOT NULL,
      server_errors INT NOT NULL,
      latency_buckets VARCHAR(2048) NOT NULL,
      PRIMARY KEY (merchant_id, minute_start, method, instance_id),
      KEY idx_rpc_call_minutes_minute (minute_start)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
