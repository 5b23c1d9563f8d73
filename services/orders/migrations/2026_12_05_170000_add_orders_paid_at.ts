import type { Kysely } from "kysely";
import { alterTableOnline } from "@stockroom/common/db";

// When the order was paid: the one transition an order's later state does
// not date (FULFILLED and CANCELLED are final, so their update_time is their
// time), and what WatchOrder needs to stream a PAID it saw only after it had
// moved on. Expand-only: a nullable column, a metadata change. NULL until
// paid; for orders paid before it existed, an order still PAID is dated by
// its updated_at when read (store.ts), later ones stay undated.
export async function up(db: Kysely<any>): Promise<void> {
  await alterTableOnline(db, "orders", ["ADD COLUMN paid_at DATETIME(3) NULL"]);
}
