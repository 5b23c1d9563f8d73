import test from "ava";
import { Code } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import { CreateOrderResponseSchema } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import {
  CatalogService,
  createProduct,
  dbOf,
  errorInfo,
  holdLock,
  OrderService,
  orderEvents,
  orderStockChanges,
  preconditionViolations,
  settle,
  startOrders,
  stockOf,
} from "./helpers.ts";

const api = await startOrders("orders_batching");
test.after.always(() => api.close());
const orders = api.client(OrderService, api.merchantA);
const merchantId = api.merchantA.merchantId;

/** locksOf counts the statements that locked a SKU's product row (SELECT … FOR UPDATE) since `from` (an index into api.queries). */
const locksOf = (sku: string, from = 0) =>
  api.queries.slice(from).filter((q) => /^select .* from `products` .*for update/i.test(q.sql) && q.parameters.includes(sku)).length;

/** auditTrail lists a SKU's audit entries (version, stock after, source_ref, request_id), oldest first. */
async function auditTrail(sku: string, merchant = merchantId) {
  const rows = await dbOf(api)
    .selectFrom("product_changes")
    .select(["version", "after_state", "source_ref", "request_id"])
    .where("merchant_id", "=", merchant)
    .where("sku", "=", sku)
    .orderBy("version")
    .execute();
  return rows.map((r) => ({
    version: Number(r.version),
    stock: (typeof r.after_state === "string" ? JSON.parse(r.after_state) : r.after_state).stock as number,
    sourceRef: r.source_ref,
    requestId: r.request_id,
  }));
}

test("concurrent orders of one SKU share transactions; each keeps its outcome in order, its version, audit entry and events", async (t) => {
  await createProduct(api, api.merchantA, "BATCH-1", 30);
  const release = await holdLock(api, merchantId, "BATCH-1");
  const from = api.queries.length;
  // All 40 arrive while the row is locked: the first waits for it alone, the rest queue in the process.
  const calls = Array.from({ length: 40 }, (_, i) =>
    orders.createOrder({ requestId: `batch-${i}`, lines: [{ sku: "BATCH-1", quantity: 1 + (i % 2) }], buyerReference: `b-${i}` }),
  );
  await new Promise((r) => setTimeout(r, 200));
  await release();
  const { won, lost } = await settle(calls);

  // Arrival order decides: quantities alternate 1, 2, 1, 2 … so the first 20 take 30 and the rest find nothing.
  t.is(won.length, 20);
  t.deepEqual(won.map((r) => r.order!.buyerReference).sort(), Array.from({ length: 20 }, (_, i) => `b-${i}`).sort());
  t.is(lost.length, 20);
  for (const e of lost) {
    t.is(e.code, Code.FailedPrecondition, e.message);
    t.is(errorInfo(e)?.reason, "INSUFFICIENT_STOCK");
    t.is(errorInfo(e)?.metadata["available"], "0");
    t.deepEqual(preconditionViolations(e), ["INSUFFICIENT_STOCK BATCH-1"]);
  }
  t.true(locksOf("BATCH-1", from) <= 5, `${locksOf("BATCH-1", from)} product locks for 40 orders`);
  // A transaction writes all its orders' audit entries with one statement, and their product events with one (it was one each).
  const inserts = (table: string) =>
    api.queries
      .slice(from)
      .filter(
        (q) => q.sql.toLowerCase().startsWith(`insert into \`${table}\``) && q.parameters.includes(won[0]!.order!.lines[0]!.productId),
      ).length;
  t.true(inserts("product_changes") <= locksOf("BATCH-1", from), `${inserts("product_changes")} audit inserts for 20 orders placed`);
  t.true(inserts("outbox_events") <= 2 * locksOf("BATCH-1", from), `${inserts("outbox_events")} outbox inserts for 20 orders placed`);

  // One unbroken chain: a version per placed order, each taking from the stock the previous left.
  t.deepEqual(await stockOf(api, merchantId, "BATCH-1"), { stock: 0, version: 21 });
  const trail = await auditTrail("BATCH-1");
  t.deepEqual(
    trail.map((c) => c.version),
    Array.from({ length: 21 }, (_, i) => i + 1),
  );
  let stock = 30;
  for (const entry of trail.slice(1)) {
    const placed = won.find((r) => r.order!.id === entry.sourceRef)!.order!;
    stock -= placed.lines[0]!.quantity;
    t.is(entry.stock, stock);
    t.is(entry.requestId, `batch-${placed.buyerReference.slice(2)}`);
  }
  for (const { order } of won) {
    t.deepEqual(
      (await orderEvents(api, merchantId, order!.id)).map((e) => e.eventType),
      ["order.created"],
    );
    t.is((await orderStockChanges(api, merchantId, order!.id)).length, 1);
  }
  const products = await dbOf(api)
    .selectFrom("outbox_events")
    .select("aggregate_version")
    .where("merchant_id", "=", merchantId)
    .where("aggregate_type", "=", "product")
    .where("aggregate_id", "=", won[0]!.order!.lines[0]!.productId)
    .orderBy("aggregate_version")
    .execute();
  t.deepEqual(
    products.map((p) => Number(p.aggregate_version)),
    Array.from({ length: 21 }, (_, i) => i + 1),
  );
});

test("lone orders of many SKUs share transactions, each SKU keeping its own stock, versions and audit; a SKU locked elsewhere is placed apart, holding up no other", async (t) => {
  // Merchant B: the other tests' orders (merchant A) would share its transactions and hold up the free SKUs.
  const merchant = api.merchantB;
  const client = api.client(OrderService, merchant);
  const skus = Array.from({ length: 12 }, (_, i) => `SPREAD-${String(i).padStart(2, "0")}`);
  for (const sku of skus) await createProduct(api, merchant, sku, 3);
  const busy = skus.at(-1)!;
  const release = await holdLock(api, merchant.merchantId, busy);
  const from = api.queries.length;
  // Four orders of one unit per SKU, all at once: three of each are placed, the fourth finds nothing left.
  const call = (sku: string, n: number) =>
    client.createOrder({ requestId: `spread-${sku}-${n}`, lines: [{ sku, quantity: 1 }], buyerReference: `${sku}/${n}` });
  const free = skus.slice(0, -1).flatMap((sku) => [0, 1, 2, 3].map((n) => call(sku, n)));
  const held = [0, 1, 2, 3].map((n) => call(busy, n));
  // Every order of the free SKUs is answered while the busy SKU's row is still locked.
  const { won, lost } = await settle(free);
  t.is(won.length, 33);
  t.is(lost.length, 11);
  for (const e of lost) t.is(errorInfo(e)?.reason, "INSUFFICIENT_STOCK", e.message);
  const shared = api.queries
    .slice(from)
    .filter((q) => /for update skip locked/i.test(q.sql) && q.parameters.filter((p) => skus.includes(String(p))).length > 1);
  t.true(shared.length > 0, "some transaction locked several of the SKUs at once");
  await release();
  const late = await settle(held);
  t.is(late.won.length, 3);
  t.is(late.lost.length, 1);

  for (const sku of skus) {
    t.deepEqual(await stockOf(api, merchant.merchantId, sku), { stock: 0, version: 4 }, sku);
    const trail = await auditTrail(sku, merchant.merchantId);
    t.deepEqual(
      trail.map((e) => [e.version, e.stock]),
      [
        [1, 3],
        [2, 2],
        [3, 1],
        [4, 0],
      ],
      sku,
    );
  }
  // Each placed order has its own stock change and its own order event.
  for (const r of [...won, ...late.won]) {
    const changes = await orderStockChanges(api, merchant.merchantId, r.order!.id);
    t.is(changes.length, 1);
    t.is(changes[0]!.sku, r.order!.lines[0]!.sku);
    t.is((await orderEvents(api, merchant.merchantId, r.order!.id)).length, 1);
  }
});

test("a retry of a batched order returns its response and reserves nothing more, even racing inside a batch", async (t) => {
  await createProduct(api, api.merchantA, "BATCH-2", 100);
  const release = await holdLock(api, merchantId, "BATCH-2");
  const request = (i: number) => ({ requestId: `retry-${i}`, lines: [{ sku: "BATCH-2", quantity: 1 }] });
  // retry-3 is sent five times among the others.
  const calls = [0, 1, 2, 3, 3, 4, 3, 5, 3, 3].map((i) => orders.createOrder(request(i)));
  await new Promise((r) => setTimeout(r, 100));
  await release();
  const { won, lost } = await settle(calls);
  t.is(lost.length, 0, lost.map((e) => e.message).join("; "));
  t.is(new Set(won.map((r) => r.order!.id)).size, 6);
  const threes = won.filter((_, i) => [3, 4, 6, 8, 9].includes(i)).map((r) => Buffer.from(toBinary(CreateOrderResponseSchema, r)));
  t.true(threes.every((b) => b.equals(threes[0]!)));
  t.is((await stockOf(api, merchantId, "BATCH-2")).stock, 94);

  const again = await orders.createOrder(request(3));
  t.true(Buffer.from(toBinary(CreateOrderResponseSchema, again)).equals(threes[0]!));
  const mismatch = await settle([orders.createOrder({ ...request(3), lines: [{ sku: "BATCH-2", quantity: 2 }] })]);
  t.is(errorInfo(mismatch.lost[0]!)?.reason, "REQUEST_ID_MISMATCH");
  t.deepEqual(await stockOf(api, merchantId, "BATCH-2"), { stock: 94, version: 7 });
});

test("a batch whose transaction fails runs its orders one by one: none lost, none applied twice", async (t) => {
  await createProduct(api, api.merchantA, "BATCH-3", 50);
  await createProduct(api, api.merchantA, "BATCH-3B", 50);
  const release = await holdLock(api, merchantId, "BATCH-3");
  const from = api.queries.length;
  // fail-0's batch reads its key unclaimed, then waits for the row; meanwhile an order of another SKU claims
  // fail-0, so the batch's COMMIT fails on the duplicate key and its orders run again on their own.
  const first = orders.createOrder({ requestId: "fail-0", lines: [{ sku: "BATCH-3", quantity: 1 }] });
  await new Promise((r) => setTimeout(r, 100));
  await orders.createOrder({ requestId: "fail-0", lines: [{ sku: "BATCH-3B", quantity: 1 }] });
  const rest = Array.from({ length: 9 }, (_, i) =>
    orders.createOrder({ requestId: `fail-${i + 1}`, lines: [{ sku: "BATCH-3", quantity: 1 }] }),
  );
  await new Promise((r) => setTimeout(r, 100));
  await release();
  const { won, lost } = await settle([first, ...rest]);
  t.true(
    api.queries.slice(from).some((q) => /^insert into `idempotency_keys`.*`response`/i.test(q.sql) && q.parameters.includes("fail-0")),
    "the batch tried to claim fail-0",
  );
  t.is(lost.length, 1);
  t.is(errorInfo(lost[0]!)?.reason, "REQUEST_ID_MISMATCH", "fail-0 ran again on its own and found the key");
  t.is(won.length, 9);
  t.is(new Set(won.map((r) => r.order!.id)).size, 9);
  t.deepEqual(await stockOf(api, merchantId, "BATCH-3"), { stock: 41, version: 10 });
  const lines = await dbOf(api)
    .selectFrom("order_lines")
    .select("order_id")
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "BATCH-3")
    .execute();
  t.is(lines.length, 9);
});

test("1,000 concurrent orders on stock 137: exactly 137 placed, the rest refused, no oversell", async (t) => {
  await createProduct(api, api.merchantA, "RUSH-1", 137);
  const { won, lost } = await settle(
    Array.from({ length: 1000 }, (_, i) => orders.createOrder({ requestId: `rush-${i}`, lines: [{ sku: "RUSH-1", quantity: 1 }] })),
  );
  t.is(won.length, 137);
  t.is(lost.length, 863);
  t.true(lost.every((e) => e.code === Code.FailedPrecondition && errorInfo(e)?.reason === "INSUFFICIENT_STOCK"));
  t.deepEqual(await stockOf(api, merchantId, "RUSH-1"), { stock: 0, version: 138 });
  const trail = await auditTrail("RUSH-1");
  t.deepEqual(
    trail.map((c) => c.stock),
    Array.from({ length: 138 }, (_, i) => 137 - i),
  );
  const lines = await dbOf(api)
    .selectFrom("order_lines")
    .select(({ fn }) => fn.sum<number>("quantity").as("sold"))
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", "RUSH-1")
    .executeTakeFirstOrThrow();
  t.is(Number(lines.sold), 137);
});

test("sold out: refusals come from committed state without the row lock, and a restock is seen by the next order", async (t) => {
  await createProduct(api, api.merchantA, "GONE-1", 3);
  const { won } = await settle(
    Array.from({ length: 5 }, (_, i) => orders.createOrder({ requestId: `gone-${i}`, lines: [{ sku: "GONE-1", quantity: 1 }] })),
  );
  t.is(won.length, 3);
  // Even with the row locked by another writer, sold-out calls answer at once.
  const release = await holdLock(api, merchantId, "GONE-1");
  const from = api.queries.length;
  const { lost } = await settle(
    Array.from({ length: 50 }, (_, i) => orders.createOrder({ requestId: `gone-late-${i}`, lines: [{ sku: "GONE-1", quantity: 1 }] })),
  );
  // A batch refused together reads its orders' keys with one statement (it was one per order: 50).
  const keyReads = api.queries.slice(from).filter((q) => /^select .* from `idempotency_keys`/i.test(q.sql)).length;
  t.true(keyReads > 0 && keyReads < 25, `${keyReads} key reads for 50 refused orders`);
  // Retries of the first five: the three placed are answered from their keys, sold out as the SKU now is.
  const again = await settle(
    Array.from({ length: 5 }, (_, i) => orders.createOrder({ requestId: `gone-${i}`, lines: [{ sku: "GONE-1", quantity: 1 }] })),
  );
  t.deepEqual(again.won.map((r) => r.order!.id).sort(), won.map((r) => r.order!.id).sort());
  t.is(again.lost.length, 2);
  // Read together, keys answer as one by one: a trailing space names the same key (the column ignores it,
  // as its collation compares), and a key that served other parameters is REQUEST_ID_MISMATCH.
  const padded = await settle(
    Array.from({ length: 5 }, (_, i) => orders.createOrder({ requestId: `gone-${i} `, lines: [{ sku: "GONE-1", quantity: 1 }] })),
  );
  t.deepEqual(padded.won.map((r) => r.order!.id).sort(), won.map((r) => r.order!.id).sort());
  const changed = await settle(
    Array.from({ length: 5 }, (_, i) => orders.createOrder({ requestId: `gone-${i}`, lines: [{ sku: "GONE-1", quantity: 2 }] })),
  );
  t.deepEqual(changed.lost.map((e) => errorInfo(e)?.reason).sort(), [
    "INSUFFICIENT_STOCK",
    "INSUFFICIENT_STOCK",
    "REQUEST_ID_MISMATCH",
    "REQUEST_ID_MISMATCH",
    "REQUEST_ID_MISMATCH",
  ]);
  await release();
  t.is(lost.length, 50);
  t.true(lost.every((e) => errorInfo(e)?.reason === "INSUFFICIENT_STOCK" && errorInfo(e)?.metadata["available"] === "0"));
  t.is(locksOf("GONE-1", from), 0, "no refusal queued on the row lock");

  await api.client(CatalogService, api.merchantA).adjustStock({ sku: "GONE-1", delta: 2 });
  const { order } = await orders.createOrder({ requestId: "gone-restocked", lines: [{ sku: "GONE-1", quantity: 2 }] });
  t.is(order!.lines[0]!.quantity, 2);
  t.deepEqual(await stockOf(api, merchantId, "GONE-1"), { stock: 0, version: 6 });
});

test("ORDER_SOLD_OUT_TRUST_MS: within it refusals need no read at all; after it a restock is seen", async (t) => {
  const trusting = await startOrders("orders_batching_trust", { soldOutTrustMs: 1500 });
  t.teardown(() => trusting.close());
  const client = trusting.client(OrderService, trusting.merchantA);
  await createProduct(trusting, trusting.merchantA, "TRUST-1", 1);
  await client.createOrder({ requestId: "trust-0", lines: [{ sku: "TRUST-1", quantity: 1 }] });
  await trusting.client(CatalogService, trusting.merchantA).adjustStock({ sku: "TRUST-1", delta: 1 });
  const from = trusting.queries.length;
  const { lost } = await settle([client.createOrder({ requestId: "trust-1", lines: [{ sku: "TRUST-1", quantity: 1 }] })]);
  const touched = trusting.queries.slice(from).filter((q) => q.parameters.includes("TRUST-1"));
  t.is(errorInfo(lost[0]!)?.reason, "INSUFFICIENT_STOCK", "the stale refusal the setting allows");
  t.is(touched.length, 0);
  // The retry of the order that was placed is answered from its key, not refused.
  const first = await client.createOrder({ requestId: "trust-0", lines: [{ sku: "TRUST-1", quantity: 1 }] });
  t.is(first.order!.lines[0]!.sku, "TRUST-1");
  t.is(trusting.queries.slice(from).filter((q) => q.parameters.includes("TRUST-1")).length, 0, "no read of the product");
  await new Promise((r) => setTimeout(r, 1600));
  const { order } = await client.createOrder({ requestId: "trust-1", lines: [{ sku: "TRUST-1", quantity: 1 }] });
  t.truthy(order);
});
