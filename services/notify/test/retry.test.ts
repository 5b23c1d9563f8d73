import test from "ava";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import {
  NotificationService,
  WebhookDeliveryState,
  type WebhookDelivery,
} from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import { waitFor } from "@stockroom/common/testing";
import { verifySignature } from "../src/signature.ts";
import { productInit } from "./helpers.ts";
import { payloadOf, startNotifyStack } from "./harness.ts";

// Retries give up after 3 s (24 h in production); three failures in a row pause an endpoint.
const stack = await startNotifyStack("notify_retry", {
  maxAgeMs: 3_000,
  retryMinMs: 20,
  retryMaxMs: 200,
  circuitAfterFailures: 3,
  circuitMaxMs: 400,
  sweepEveryMs: 200,
  perEndpointConcurrency: 2,
});
const { api, receiver } = stack;
test.after.always(() => stack.close());
const catalogA = api.client(CatalogService, api.merchantA);
const catalogB = api.client(CatalogService, api.merchantB);
const notifyA = api.client(NotificationService, api.merchantA);
const notifyB = api.client(NotificationService, api.merchantB);

async function deadLetters(endpointId: string, expected: number): Promise<WebhookDelivery[]> {
  return waitFor(
    `${expected} dead letters`,
    async () => {
      const { deadLetters } = await notifyA.listDeadLetters({ endpointId, pageSize: 500 });
      return deadLetters.length >= expected ? deadLetters : undefined;
    },
    20_000,
  );
}

test.serial("a failing endpoint is retried with backoff, becomes a dead letter, and a replay delivers once it recovers", async (t) => {
  const { endpoint, signingSecret } = await notifyA.createWebhookEndpoint({ url: receiver.url("/fail"), eventTypes: ["product.*"] });
  receiver.on("/fail", { status: 500 });
  const created = Date.now();
  await catalogA.createProduct({ product: productInit("FAIL-1") });

  const [dead] = await deadLetters(endpoint!.id, 1);
  const attempts = receiver.at("/fail");
  t.is(dead!.state, WebhookDeliveryState.DEAD);
  t.is(dead!.eventType, "product.created");
  t.is(dead!.lastStatusCode, 500);
  t.regex(dead!.lastError, /HTTP 500/);
  t.is(JSON.parse(dead!.payload).data.product.sku, "FAIL-1");
  t.true(dead!.attempts >= 2, `${dead!.attempts} attempts`);
  t.is(attempts.length, dead!.attempts, "every attempt reached the endpoint and was counted");
  t.true(new Set(attempts.map((r) => r.headers["stockroom-delivery-id"])).size === 1, "the same delivery each time");
  // Retried for about the 3 s budget, not hammered nor given up early.
  const span = attempts.at(-1)!.at - attempts[0]!.at;
  t.true(span <= 3_000 + 500, `retried for ${span} ms`);
  t.true(timestampDate(dead!.lastAttemptTime!).getTime() - created >= 2_000, "given up only near the end of the budget");
  const { endpoint: failing } = await notifyA.getWebhookEndpoint({ endpointId: endpoint!.id });
  t.true(failing!.consecutiveFailures >= dead!.attempts);

  receiver.on("/fail", { status: 204 });
  const replayed = await notifyA.replayDeadLetter({ deliveryId: dead!.id });
  t.is(replayed.delivery!.state, WebhookDeliveryState.PENDING);
  const ok = await waitFor("the replayed delivery", async () => receiver.at("/fail").find((r) => r.status === 204), 10_000);
  t.is(payloadOf(ok).id, dead!.eventId);
  t.true(verifySignature(String(ok.headers["stockroom-signature"]), ok.body, signingSecret));
  t.deepEqual((await notifyA.listDeadLetters({ endpointId: endpoint!.id })).deadLetters, []);
  await waitFor(
    "the failure count to reset",
    async () => ((await notifyA.getWebhookEndpoint({ endpointId: endpoint!.id })).endpoint!.consecutiveFailures === 0 ? true : undefined),
    5_000,
  );
  t.is(receiver.at("/fail").filter((r) => r.status === 204).length, 1);
});

test.serial(
  "a dead endpoint's backlog is paused rather than retried in bulk, others are unaffected, and replay-all recovers it",
  async (t) => {
    const { endpoint } = await notifyA.createWebhookEndpoint({ url: receiver.url("/down"), eventTypes: ["product.*"] });
    await notifyB.createWebhookEndpoint({ url: receiver.url("/b/ok"), eventTypes: ["*"] });
    receiver.on("/down", { status: 503 });
    const backlog = 30;
    for (let i = 0; i < backlog; i++) await catalogA.createProduct({ product: productInit(`DOWN-${i}`) });
    await waitFor(
      "the endpoint to be paused",
      async () => ((await notifyA.getWebhookEndpoint({ endpointId: endpoint!.id })).endpoint!.pausedUntil ? true : undefined),
      10_000,
    );

    const start = Date.now();
    await catalogB.createProduct({ product: productInit("B-OK") });
    const b = await waitFor("B's delivery", async () => receiver.at("/b/ok")[0], 10_000);
    t.true(b.at - start < 1_000, `B's webhook arrived ${b.at - start} ms after its change`);

    const dead = await deadLetters(endpoint!.id, backlog);
    t.is(new Set(dead.map((d) => d.eventId)).size, backlog);
    const hits = receiver.at("/down").length;
    t.true(hits < backlog, `${hits} requests for ${backlog} deliveries over their whole retry budget`);
    t.true(
      dead.some((d) => d.attempts === 0),
      "deliveries that were never tried while paused expired too",
    );

    receiver.on("/down", { status: 200 });
    t.is((await notifyA.replayAllDeadLetters({ endpointId: endpoint!.id })).replayedCount, BigInt(backlog));
    await waitFor(
      "every replayed delivery",
      async () =>
        new Set(
          receiver
            .at("/down")
            .filter((r) => r.status === 200)
            .map((r) => payloadOf(r).id),
        ).size === backlog
          ? true
          : undefined,
      20_000,
    );
    t.deepEqual((await notifyA.listDeadLetters({ endpointId: endpoint!.id })).deadLetters, []);
  },
);
