/**
 * The projector applies events idempotently by (product id, version):
 * events arriving late, twice or out of order never move a row back.
 * Events are published straight onto this file's stream, in the orders a
 * redelivery or a republish after a crash could produce.
 */
import test from "ava";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  ChangeType,
  ProductEventBatchSchema,
  ProductEventSchema,
  ProductStatus,
  type ProductEvent,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { EVENT_HEADERS, eventSubject, PRODUCT_EVENT_BATCH } from "@stockroom/events";
import { publishWithId } from "@stockroom/common/nats";
import { waitFor } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { findPosition, upsertEntries, type SearchEntry } from "../src/store.ts";
import type { SearchProjector } from "../src/projector.ts";
import { startSearchHarness, unpublished, writeInOneTransaction, type SearchHarness } from "./harness.ts";

let h: SearchHarness;
let projector: SearchProjector;

test.before(async () => {
  h = await startSearchHarness("projection");
  projector = await h.startProjector();
});

test.after.always(async () => {
  await h?.close();
});

interface State {
  productId: string;
  version: number;
  title: string;
  deleted?: boolean;
}

/** productEvent is one product event of the given state. */
function productEvent(merchantId: string, sku: string, s: State): ProductEvent {
  return create(ProductEventSchema, {
    eventId: newUlid(),
    merchantId,
    type: s.deleted ? ChangeType.DELETED : ChangeType.UPDATED,
    product: {
      id: s.productId,
      sku,
      title: s.title,
      price: { currencyCode: "EUR", minorUnits: 500n },
      stock: 1,
      status: ProductStatus.ACTIVE,
      version: BigInt(s.version),
    },
    occurTime: timestampNow(),
  });
}

/** publish puts one product event on the stream under a fresh message id, as a republish would. */
async function publish(merchantId: string, sku: string, s: State): Promise<void> {
  const event = productEvent(merchantId, sku, s);
  const subject = eventSubject(h.events, {
    aggregate_type: "product",
    merchant_id: merchantId,
    event_type: s.deleted ? "product.deleted" : "product.updated",
  });
  await publishWithId(h.nats.js, subject, toBinary(ProductEventSchema, event), event.eventId);
}

/** publishBatch puts events on the stream as one batch message, as the relay publishes a bulk chunk's. */
async function publishBatch(merchantId: string, events: ProductEvent[]): Promise<void> {
  const subject = eventSubject(h.events, { aggregate_type: "product", merchant_id: merchantId, event_type: PRODUCT_EVENT_BATCH });
  const data = toBinary(ProductEventBatchSchema, create(ProductEventBatchSchema, { events }));
  await publishWithId(h.nats.js, subject, data, newUlid(), {
    [EVENT_HEADERS.eventType]: PRODUCT_EVENT_BATCH,
    [EVENT_HEADERS.eventCount]: String(events.length),
  });
}

async function drained(): Promise<void> {
  await waitFor("the projector to apply every event", async () => ((await projector.lag()).pendingEvents === 0 ? true : undefined));
}

async function held(merchantId: string, sku: string) {
  return h.searchDb
    .selectFrom("search_documents")
    .select(["product_id", "version", "title", "deleted"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .executeTakeFirst();
}

test("late, repeated and reordered events never move a product back; a delete stays a tombstone; a recreated SKU wins", async (t) => {
  const merchant = newUlid();
  const p1 = newUlid();
  const v = (version: number, deleted = false): State => ({ productId: p1, version, title: `version ${version}`, deleted });

  for (const s of [v(3), v(1), v(2), v(3), v(1)]) await publish(merchant, "X", s);
  await drained();
  t.like(await held(merchant, "X"), { product_id: p1, version: 3, title: "version 3", deleted: 0 });

  for (const s of [v(4, true), v(2), v(3)]) await publish(merchant, "X", s);
  await drained();
  t.like(await held(merchant, "X"), { product_id: p1, version: 4, deleted: 1 }, "the delete is kept against older updates");

  const p2 = newUlid();
  for (const s of [{ productId: p2, version: 1, title: "recreated" }, v(3), v(4, true)]) await publish(merchant, "X", s);
  await drained();
  t.like(
    await held(merchant, "X"),
    { product_id: p2, version: 1, title: "recreated", deleted: 0 },
    "the newer product id wins over the old one's versions",
  );
  t.true(projector.stats().commitToVisible.samples > 0);
});

test("a batch message is applied event by event under the same guard: older versions inside it never move a row back", async (t) => {
  const merchant = newUlid();
  const [p, q, r] = [newUlid(), newUlid(), newUlid()];
  await publish(merchant, "P", { productId: p, version: 3, title: "P 3" });
  await drained();
  const rejected = projector.stats().rejected;
  await publishBatch(merchant, [
    productEvent(merchant, "P", { productId: p, version: 2, title: "P 2" }),
    productEvent(merchant, "Q", { productId: q, version: 1, title: "Q 1" }),
    create(ProductEventSchema, { eventId: newUlid(), merchantId: merchant }), // describes no product
    productEvent(merchant, "R", { productId: r, version: 4, title: "R 4", deleted: true }),
  ]);
  await drained();
  t.like(await held(merchant, "P"), { version: 3, title: "P 3" }, "the batch's older version of P is ignored");
  t.like(await held(merchant, "Q"), { product_id: q, version: 1, title: "Q 1", deleted: 0 });
  t.like(await held(merchant, "R"), { version: 4, deleted: 1 });
  t.is(projector.stats().rejected, rejected + 1, "the event without a product is dropped alone");
  // A republished batch (a relay crash) and a newer single event after it.
  await publish(merchant, "Q", { productId: q, version: 2, title: "Q 2" });
  await publishBatch(merchant, [productEvent(merchant, "Q", { productId: q, version: 1, title: "Q 1" })]);
  await drained();
  t.like(await held(merchant, "Q"), { version: 2, title: "Q 2" });
});

test("a bulk-sized transaction reaches search through the relay as batches", async (t) => {
  const merchant = await h.newMerchant();
  const skus = Array.from({ length: 150 }, (_, i) => `BULK-${String(i).padStart(3, "0")}`);
  await writeInOneTransaction(h, merchant, skus, 1500);
  await writeInOneTransaction(h, merchant, skus.slice(0, 100), 1700);
  const relay = await h.startRelay();
  t.teardown(() => relay.stop());
  await waitFor("every row published", async () => ((await unpublished(h)) === 0 ? true : undefined));
  await drained();
  const rows = await h.searchDb
    .selectFrom("search_documents")
    .select(["sku", "version", "price_minor"])
    .where("merchant_id", "=", merchant.merchantId)
    .orderBy("sku")
    .execute();
  t.is(rows.length, 150);
  t.deepEqual(
    rows.map((r) => [Number(r.version), Number(r.price_minor)]),
    skus.map((_, i) => (i < 100 ? [2, 1700] : [1, 1500])),
  );
});

test("an event that describes no product is dropped and does not hold up the rest", async (t) => {
  const merchant = newUlid();
  const subject = eventSubject(h.events, { aggregate_type: "product", merchant_id: merchant, event_type: "product.updated" });
  await publishWithId(h.nats.js, subject, new Uint8Array([0xff, 0xff, 0xff]), newUlid());
  await publishWithId(
    h.nats.js,
    subject,
    toBinary(ProductEventSchema, create(ProductEventSchema, { eventId: newUlid(), merchantId: merchant })),
    newUlid(),
  );
  await publish(merchant, "Y", { productId: newUlid(), version: 1, title: "fine" });
  await drained();
  t.like(await held(merchant, "Y"), { title: "fine" });
  t.true(projector.stats().rejected >= 2);
});

test("concurrent upserts of one SKU in random order end at the newest state", async (t) => {
  const merchant = newUlid();
  const [older, newer] = [newUlid(), newUlid()];
  const entry = (productId: string, version: number): SearchEntry => ({
    merchant_id: merchant,
    sku: "RACE",
    product_id: productId,
    version,
    deleted: 0,
    title: `${productId === newer ? "new" : "old"} ${version}`,
    description: "",
    attributes_text: "",
    price_minor: version,
    currency: "EUR",
    stock: version,
    status: "active",
    changed_at: new Date(),
    brand: `brand ${version}`,
  });
  const entries = [
    ...Array.from({ length: 30 }, (_, i) => entry(older, i + 1)),
    ...Array.from({ length: 5 }, (_, i) => entry(newer, i + 1)),
  ];
  entries.sort(() => Math.random() - 0.5);
  await Promise.all(
    entries.map((e) =>
      upsertEntries(h.searchDb, [e]).catch(async (error) => {
        // Two first inserts of one key can deadlock; the projector's retry does the same.
        if (!/deadlock/i.test(String(error))) throw error;
        await upsertEntries(h.searchDb, [e]);
      }),
    ),
  );
  t.like(await held(merchant, "RACE"), { product_id: newer, version: 5, title: "new 5" });
  t.deepEqual(await findPosition(h.searchDb, merchant, "RACE"), { productId: newer, version: 5 });
});
