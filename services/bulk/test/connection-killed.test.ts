/**
 * A chunk whose last delivery failed because its database connection was
 * killed (a failover, a restart, an operator's KILL) is not the chunk's
 * fault: its items are not marked FAILED. The message goes, the chunk stays
 * queued in the ledger, and the reconciler publishes it again. Before, the
 * poison handler failed the chunk on a fresh connection and the job ended
 * PARTIALLY_SUCCEEDED with every item of it FAILED.
 */
import test from "ava";
import { sql } from "kysely";
import { BulkJobState } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { waitFor } from "@stockroom/common/testing";
import { startBulkHarness } from "./harness.ts";

// One delivery per message: the first failure is the last; the reconciler looks every second.
const h = await startBulkHarness("killed", {}, { queue: { maxDeliver: 1, reconcileAfterMs: 1_000 } });
test.after.always(() => h.close());

test("a chunk whose only delivery lost its connection mid-transaction is published again and applied, not failed", async (t) => {
  const merchantId = h.api.merchantA.merchantId;
  const skus = Array.from({ length: 10 }, (_, i) => `KILL-${h.suffix}-${i}`);
  await h.catalog.createProduct({ product: { sku: skus[0]!, title: "before", price: { currencyCode: "EUR", minorUnits: 100n } } });
  const file = new TextEncoder().encode(`sku,title,price,currency\n${skus.map((sku) => `${sku},after,2.00,EUR`).join("\n")}\n`);

  const jobId = await h.api.api.db.connection().execute(async (conn) => {
    // Hold the first product's row, so the chunk's transaction waits on it.
    await sql`BEGIN`.execute(conn);
    await sql`SELECT sku FROM products WHERE merchant_id = ${merchantId} AND sku = ${skus[0]} FOR UPDATE`.execute(conn);
    const { job } = await h.upload({}, [file]);
    const waiting = await waitFor(
      "the chunk's transaction to wait on the row",
      async () => {
        // The chunk's locking read of its products, blocked by this session's lock.
        const { rows } = await sql<{ id: number }>`
          SELECT ID AS id FROM information_schema.PROCESSLIST
          WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND = 'Query' AND INFO LIKE '%products%' AND TIME >= 1`.execute(conn);
        return rows[0]?.id;
      },
      15_000,
    );
    await sql`KILL CONNECTION ${sql.lit(Number(waiting))}`.execute(conn);
    await sql`ROLLBACK`.execute(conn);
    return job!.id;
  });

  const done = await h.finalJob(jobId);
  t.is(done.state, BulkJobState.SUCCEEDED, `${BulkJobState[done.state]}: ${done.error}`);
  t.is(done.counts!.failed, 0n);
  t.is(done.counts!.applied + done.counts!.unchanged, 10n);
  t.is((await h.catalog.getProduct({ sku: skus[0]! })).product!.title, "after");
  t.is((await h.catalog.getProduct({ sku: skus[9]! })).product!.title, "after");
});
