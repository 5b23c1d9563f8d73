import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// A row may carry a batch of events (a bulk chunk's product events as one
// stockroom.catalog.v1.ProductEventBatch): the relay sizes its rounds by
// events, not rows, so that a round of batch rows stays bounded. Every row
// written before (and by a release that does not know the column) is one
// event: DEFAULT 1, which MariaDB and MySQL 8 add instantly.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "outbox_events", ["ADD COLUMN event_count INT NOT NULL DEFAULT 1"]);
}
