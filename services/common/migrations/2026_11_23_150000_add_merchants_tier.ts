import { sql, type Kysely } from "kysely";

// The merchant's service tier (standard, plus, enterprise): RPC latency
// metrics are labelled with it and SLOs are set per tier. Expand-only, and
// instant on MySQL 8 / MariaDB 10.3+ (a column with a constant default).
export async function up(db: Kysely<any>): Promise<void> {
  await sql`ALTER TABLE merchants ADD COLUMN tier VARCHAR(16) NOT NULL DEFAULT 'standard'`.execute(db);
}
