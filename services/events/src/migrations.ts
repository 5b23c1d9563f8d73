import path from "node:path";
import type { MigrationSet } from "@stockroom/common/db";

/**
 * eventsMigrations is the folder of the outbox table. Its migration used to
 * be common's: where common's bookkeeping records it as applied, the record
 * is handed over (migrateToLatest) so it never runs twice. Every process that
 * writes or relays the outbox lists this set (migrateToLatest runs a set
 * listed twice once).
 */
export const eventsMigrations: MigrationSet = {
  name: "events",
  folder: path.join(import.meta.dirname, "..", "migrations"),
  adopts: [{ set: "common", migrations: ["2026_11_23_090300_create_outbox_events"] }],
};
