import test from "ava";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  BulkJobEventSchema,
  BulkJobEventType,
  BulkJobSchema,
  BulkJobState,
  type BulkJob,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { ChangeType, ProductEventSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { NotificationService } from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import { EVENT_HEADERS, eventSubject, appendOutbox, PRODUCT_EVENT_BATCH } from "@stockroom/events";
import { publishWithId } from "@stockroom/common/nats";
import { waitFor } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { createLogger } from "@stockroom/common/observe";
import { startWebhookDispatcher } from "../src/dispatcher.ts";
import { verifySignature } from "../src/signature.ts";
import { productInit, writeInOneTransaction } from "./helpers.ts";
import { payloadOf, startNotifyStack, type Received } from "./harness.ts";

const stack = await startNotifyStack("notify_delivery", { perEndpointConcurrency: 2, concurrency: 8 });
const { api, receiver } = stack;
test.after.always(() => stack.close());
const catalogA = api.client(CatalogService, api.merchantA);
const catalogB = api.client(CatalogService, api.merchantB);
const notifyA = api.client(NotificationService, api.merchantA);
const notifyB = api.client(NotificationService, api.merchantB);

/** jobFinished writes a bulk_job.finished event to the outbox as the bulk service does (stockroom.bulk.v1.BulkJobEvent). */
function jobFinished(merchantId: string, job: BulkJob) {
  const eventId = newUlid();
  const at = new Date();
  const payload = toBinary(
    BulkJobEventSchema,
    create(BulkJobEventSchema, { eventId, merchantId, type: BulkJobEventType.FINISHED, job, occurTime: timestampFromDate(at) }),
  );
  return api.api.db.transaction().execute((trx) =>
    appendOutbox(trx, [
      {
        merchantId,
        eventId,
        aggregateType: "bulk_job",
        aggregateId: job.id,
        aggregateVersion: Number(job.version),
        eventType: "bulk_job.finished",
        payload,
        createdAt: at,
      },
    ]),
  );
}

const secrets = new Map<string, string>();
async function endpoint(client: typeof notifyA, path: string, eventTypes: string[]): Promise<string> {
  const { endpoint, signingSecret } = await client.createWebhookEndpoint({ url: receiver.url(path), eventTypes });
  secrets.set(path, signingSecret);
  return endpoint!.id;
}

function assertSigned(t: { true(v: boolean, m?: string): void; is(a: unknown, b: unknown, m?: string): void }, r: Received): void {
  const header = String(r.headers["stockroom-signature"]);
  t.true(verifySignature(header, r.body, secrets.get(r.path)!), `signature of ${r.body.slice(0, 80)}`);
  t.is(r.headers["stockroom-event-id"], payloadOf(r).id);
  t.is(r.headers["stockroom-event-type"], payloadOf(r).type);
  t.is(r.headers["content-type"], "application/json");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test.serial("committed changes reach the endpoints whose filters match, signed with their secrets", async (t) => {
  await endpoint(notifyA, "/a/products", ["product.*"]);
  await endpoint(notifyA, "/a/jobs", ["bulk_job.finished"]);
  await endpoint(notifyB, "/b/all", ["*"]);

  const { product } = await catalogA.createProduct({ product: productInit("HOOK-1") });
  await catalogA.updateProduct({ product: { sku: "HOOK-1", title: "Renamed" }, updateMask: { paths: ["title"] } });
  const job = create(BulkJobSchema, { id: newUlid(), state: BulkJobState.SUCCEEDED, counts: { total: 3n, applied: 3n }, version: 7n });
  await jobFinished(api.merchantA.merchantId, job);

  await waitFor("three deliveries", async () => (receiver.received.length >= 3 ? true : undefined), 15_000);
  await sleep(300); // nothing else may arrive
  const products = receiver.at("/a/products");
  const jobs = receiver.at("/a/jobs");
  t.is(products.length, 2);
  t.is(jobs.length, 1);
  t.deepEqual(receiver.at("/b/all"), [], "B made no changes");
  for (const r of [...products, ...jobs]) assertSigned(t, r);

  const bodies = products.map(payloadOf).sort((x, y) => x.type.localeCompare(y.type));
  t.deepEqual(
    bodies.map((b) => b.type),
    ["product.created", "product.updated"],
  );
  for (const b of bodies) {
    t.is(b.merchantId, api.merchantA.merchantId);
    t.is(b.data.product.id, product!.id);
    t.is(b.data.eventId, b.id);
    t.false(Number.isNaN(Date.parse(b.occurTime)));
  }
  t.is(bodies[1]!.data.product.title, "Renamed");
  t.deepEqual(bodies[1]!.data.changedFields, ["title"]);
  const finished = payloadOf(jobs[0]!);
  t.is(finished.type, "bulk_job.finished");
  t.is(finished.data.job.id, job.id);
  t.is(finished.data.job.state, "BULK_JOB_STATE_SUCCEEDED");
  t.is(finished.data.type, "BULK_JOB_EVENT_TYPE_FINISHED");

  const states = await stack.db.selectFrom("webhook_deliveries").select(["state", "attempts", "last_status"]).execute();
  t.deepEqual(
    states,
    states.map(() => ({ state: "delivered", attempts: 1, last_status: 200 })),
  );
});

test.serial("a bulk-sized change's batch message reaches endpoints as one delivery per product event, as single events do", async (t) => {
  await endpoint(notifyB, "/b/orders", ["order.*"]);
  await endpoint(notifyB, "/b/created", ["product.created"]);
  const skus = Array.from({ length: 60 }, (_, i) => `BATCH-${i}`);
  await writeInOneTransaction(api.api, api.merchantB, skus);
  const batches = await api.api.db
    .selectFrom("outbox_events")
    .select("event_count")
    .where("merchant_id", "=", api.merchantB.merchantId)
    .where("event_type", "=", PRODUCT_EVENT_BATCH)
    .execute();
  t.deepEqual(batches, [{ event_count: 60 }], "the changes went out as one batch row");
  await waitFor("60 deliveries to each product endpoint", async () =>
    receiver.at("/b/all").length >= 60 && receiver.at("/b/created").length >= 60 ? true : undefined,
  );
  await sleep(300);
  const changes = await api.api.db
    .selectFrom("product_changes")
    .select(["change_id", "sku"])
    .where("merchant_id", "=", api.merchantB.merchantId)
    .where("sku", "in", skus)
    .execute();
  for (const path of ["/b/all", "/b/created"]) {
    const got = receiver.at(path);
    t.is(got.length, 60, path);
    for (const r of got) assertSigned(t, r);
    const bodies = got.map(payloadOf);
    t.true(bodies.every((b) => b.type === "product.created" && b.merchantId === api.merchantB.merchantId && b.data.eventId === b.id));
    t.deepEqual(
      bodies.map((b) => `${b.id} ${b.data.product.sku}`).sort(),
      changes.map((c) => `${c.change_id} ${c.sku}`).sort(),
      "each delivery is one product's event, under its own event id",
    );
  }
  t.deepEqual(receiver.at("/b/orders"), [], "an endpoint of other event types gets nothing");
  receiver.received.length = 0;
});

test.serial("an event the consumer gets twice (same event id published again) is delivered once", async (t) => {
  const eventId = newUlid();
  const at = new Date();
  const event = create(ProductEventSchema, {
    eventId,
    merchantId: api.merchantB.merchantId,
    type: ChangeType.UPDATED,
    product: { id: newUlid(), sku: "DUP-1", title: "Twice", version: 2n },
    changedFields: ["title"],
    occurTime: timestampFromDate(at),
  });
  // Exactly as the relay publishes an outbox row.
  const row = { aggregate_type: "product", merchant_id: api.merchantB.merchantId, event_type: "product.updated" };
  const headers = {
    [EVENT_HEADERS.merchant]: api.merchantB.merchantId,
    [EVENT_HEADERS.eventType]: "product.updated",
    [EVENT_HEADERS.aggregateType]: "product",
    [EVENT_HEADERS.aggregateId]: event.product!.id,
    [EVENT_HEADERS.aggregateVersion]: "2",
    [EVENT_HEADERS.eventTime]: at.toISOString(),
  };
  const publish = () =>
    publishWithId(stack.nats.js, eventSubject(stack.events, row), toBinary(ProductEventSchema, event), eventId, headers);
  const eventsBefore = stack.dispatcher.stats().events;
  t.false((await publish()).duplicate);
  await waitFor("B's delivery", async () => (receiver.at("/b/all").length >= 1 ? true : undefined), 10_000);
  await sleep(1_200); // past the stream's duplicate window: the stream stores the second copy
  t.false((await publish()).duplicate, "the stream took the copy, so the consumer sees the event twice");
  await waitFor("the intake to see the copy", async () => (stack.dispatcher.stats().events >= eventsBefore + 2 ? true : undefined), 10_000);
  await sleep(300);
  const got = receiver.at("/b/all").filter((r) => payloadOf(r).id === eventId);
  t.is(got.length, 1);
  assertSigned(t, got[0]!);
  const rows = await stack.db
    .selectFrom("webhook_deliveries")
    .select("delivery_id")
    .where("merchant_id", "=", api.merchantB.merchantId)
    .where("event_id", "=", eventId)
    .execute();
  t.is(rows.length, 1);
});

test.serial("a slow endpoint of merchant A does not delay merchant B's delivery (or A's other endpoint)", async (t) => {
  await endpoint(notifyA, "/a/slow", ["product.*"]);
  receiver.on("/a/slow", { status: 200, delayMs: 5_000 });
  for (let i = 0; i < 6; i++) await catalogA.createProduct({ product: productInit(`SLOW-${i}`) });
  await waitFor("the slow endpoint to be busy", async () => (receiver.at("/a/slow").length >= 2 ? true : undefined), 10_000);

  const before = receiver.at("/b/all").length;
  const start = Date.now();
  await catalogB.createProduct({ product: productInit("FAST-1") });
  const arrived = await waitFor("B's delivery", async () => receiver.at("/b/all")[before], 10_000);
  const latency = arrived.at - start;
  t.true(latency < 1_000, `B's webhook arrived ${latency} ms after its change`);
  t.is(payloadOf(arrived).data.product.sku, "FAST-1");
  // A's fast endpoint got the same six events without waiting for the slow one.
  await waitFor(
    "A's fast endpoint",
    async () =>
      receiver.at("/a/products").filter((r) => payloadOf(r).data.product.sku.startsWith("SLOW-")).length === 6 ? true : undefined,
    5_000,
  );
  t.true(receiver.at("/a/slow").length <= 2 + 2, "at most two requests at a time to the slow endpoint");
});

test.serial("two dispatcher processes share the work and never send a delivery twice", async (t) => {
  const second = await startWebhookDispatcher({
    db: stack.db,
    nats: stack.nats,
    events: stack.events,
    config: stack.config,
    allowPrivateTargets: true,
    log: createLogger("test-second-dispatcher", "silent"),
  });
  t.teardown(() => second.stop());
  const before = receiver.at("/b/all").length;
  const skus = Array.from({ length: 40 }, (_, i) => `TWO-${i}`);
  await Promise.all(skus.map((sku) => catalogB.createProduct({ product: productInit(sku) })));
  await waitFor("40 deliveries", async () => (receiver.at("/b/all").length >= before + 40 ? true : undefined), 15_000);
  await sleep(300);
  const got = receiver
    .at("/b/all")
    .slice(before)
    .map((r) => payloadOf(r).data.product.sku as string);
  t.deepEqual([...got].sort(), [...skus].sort());
  t.log(`the second dispatcher sent ${second.stats().delivered} of them`);
});
