import { sql, type Kysely } from "kysely";

// The chunk ledger. A chunk covers the job's valid items in [first_line,
// last_line]. Its apply transaction moves state from 'queued' to 'applied'
// with a conditional UPDATE, so a redelivered chunk finds it applied and is
// a no-op. attempt numbers re-publishes (Nats-Msg-Id <job>:<chunk>:<attempt>):
// JetStream remembers ids for its duplicate window even after an ack.
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    CREATE TABLE bulk_job_chunks (
      merchant_id VARCHAR(26) NOT NULL,
      job_id VARCHAR(26) NOT NULL,
      chunk_no INT NOT NULL,
      first_line BIGINT NOT NULL,
      last_line BIGINT NOT NULL,
      item_count INT NOT NULL,
      state VARCHAR(16) NOT NULL,
      attempt INT NOT NULL,
      published_at DATETIME(3) NULL,
      applied_at DATETIME(3) NULL,
      error VARCHAR(1000) NOT NULL,
      PRIMARY KEY (merchant_id, job_id, chunk_no),
      KEY idx_bulk_job_chunks_state (state, published_at)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`.execute(db);
}
