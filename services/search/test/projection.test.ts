/**
 * The projector applies events idempotently by (product id, version):
 * events arriving late, twice or out of order never move a row back.
 * Events are published straight onto this file's stream, in the orders a
 * redelivery or a republish after a crash could produce.
 */
import test from "ava";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { ChangeType, ProductEventSchema, ProductStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { eventSubject } from "@stockroom/events";
import { publishWithId } from "@stockroom/common/nats";
import { waitFor } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { findPosition, upsertEntries, type SearchEntry } from "../src/store.ts";
import type { SearchProjector } from "../src/projector.ts";
import { startSearchHarness, type SearchHarness } from "./harness.ts";

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

/** publish puts one product event on the stream under a fresh message id, as a republish would. */
async function publish(merchantId: string, sku: string, s: State): Promise<void> {
  const type = s.deleted ? ChangeType.DELETED : ChangeType.UPDATED;
  const eventId = newUlid();
  const data = toBinary(
    ProductEventSchema,
    create(ProductEventSchema, {
      eventId,
      merchantId,
      type,
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
    }),
  );
  const subject = eventSubject(h.events, {
    aggregate_type: "product",
    merchant_id: merchantId,
    event_type: s.deleted ? "product.deleted" : "product.updated",
  });
  await publishWithId(h.nats.js, subject, data, eventId);
}

async function drained(): Promise<void> {
  await waitFor("the projector to apply every event", async () => ((await projector.lag()).pendingEvents === 0 ? true : undefined));
}

async function held(merchantId: string, sku: string) {
  return h.searchDb
    .selectFrom("search_products")
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
