import test from "ava";
import { Code } from "@connectrpc/connect";
import { durationFromMs, timestampDate } from "@bufbuild/protobuf/wkt";
import { toJsonString } from "@bufbuild/protobuf";
import {
  ListWebhookEndpointsResponseSchema,
  NotificationService,
  WebhookDeliveryState,
} from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import { startTestApi } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { parseNotifyConfig } from "../src/config.ts";
import { insertDeliveries } from "../src/deliveries.ts";
import { notifyModule } from "../src/module.ts";
import type { WebhookDeliveryRow } from "../src/store.ts";
import { countRows, errorInfo, fieldViolations, rejection } from "./helpers.ts";
import type { NotifyTables } from "../src/store.ts";

// Production settings: only public targets.
const api = await startTestApi<NotifyTables>("notify_api", (db) => [notifyModule(db, parseNotifyConfig({}))]);
const db = api.api.db;
const a = api.client(NotificationService, api.merchantA);
const b = api.client(NotificationService, api.merchantB);
test.after.always(() => api.close());

/** deadLetter stores a dead delivery for an endpoint, as the dispatcher leaves one. */
async function deadLetter(merchantId: string, endpointId: string): Promise<string> {
  const now = new Date();
  const row: WebhookDeliveryRow = {
    merchant_id: merchantId,
    delivery_id: newUlid(),
    endpoint_id: endpointId,
    event_id: newUlid(),
    event_type: "product.updated",
    payload: '{"id":"x"}',
    state: "dead",
    attempts: 9,
    next_attempt_at: now,
    expires_at: now,
    last_attempt_at: now,
    last_status: 503,
    last_error: "HTTP 503",
    created_at: now,
  };
  await insertDeliveries(db, [row]);
  return row.delivery_id;
}

test.serial("CreateWebhookEndpoint returns the endpoint and its secret; reads never show the secret", async (t) => {
  const created = await a.createWebhookEndpoint({
    url: "https://hooks.example.com/a",
    eventTypes: ["product.*", "bulk_job.finished"],
    description: "ERP",
  });
  t.regex(created.signingSecret, /^whsec_[A-Za-z0-9_-]{43}$/);
  const endpoint = created.endpoint!;
  t.is(endpoint.url, "https://hooks.example.com/a");
  t.deepEqual(endpoint.eventTypes, ["product.*", "bulk_job.finished"]);
  t.is(endpoint.consecutiveFailures, 0);
  t.is(endpoint.pausedUntil, undefined);
  const { endpoint: read } = await a.getWebhookEndpoint({ endpointId: endpoint.id });
  t.deepEqual(read, endpoint);
  t.false(toJsonString(ListWebhookEndpointsResponseSchema, await a.listWebhookEndpoints({})).includes(created.signingSecret));
});

test.serial("a repeated request_id returns the first endpoint and secret, and creates nothing more", async (t) => {
  const before = await countRows(api, "webhook_endpoints", api.merchantA.merchantId);
  const request = { url: "https://hooks.example.com/idem", eventTypes: ["order.*"], requestId: "create-hook-1" };
  const first = await a.createWebhookEndpoint(request);
  const again = await a.createWebhookEndpoint(request);
  t.deepEqual(again, first);
  t.is(await countRows(api, "webhook_endpoints", api.merchantA.merchantId), before + 1);
  const other = await rejection(t, a.createWebhookEndpoint({ ...request, url: "https://hooks.example.com/other" }), Code.InvalidArgument);
  t.is(errorInfo(other)?.reason, "REQUEST_ID_MISMATCH");
});

test.serial("bad URLs, private targets and unknown event types are INVALID_ARGUMENT with field violations", async (t) => {
  const error = await rejection(
    t,
    a.createWebhookEndpoint({ url: "ftp://example.com/x", eventTypes: ["product.*", "produkt.updated"], description: "x".repeat(501) }),
    Code.InvalidArgument,
  );
  t.deepEqual(fieldViolations(error).sort(), ["description", "event_types[1]", "url"]);
  for (const url of ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://localhost/x", "http://[::1]/"]) {
    const e = await rejection(t, a.createWebhookEndpoint({ url, eventTypes: ["*"] }), Code.InvalidArgument);
    t.deepEqual(fieldViolations(e), ["url"], url);
  }
  await rejection(t, a.createWebhookEndpoint({ url: "https://hooks.example.com/x", eventTypes: [] }), Code.InvalidArgument);
});

test.serial("RotateWebhookSecret: a new secret; the old one stays valid for the asked time, or not at all", async (t) => {
  const { endpoint, signingSecret } = await a.createWebhookEndpoint({ url: "https://hooks.example.com/rotate", eventTypes: ["*"] });
  const rotated = await a.rotateWebhookSecret({ endpointId: endpoint!.id });
  t.not(rotated.signingSecret, signingSecret);
  const expires = timestampDate(rotated.endpoint!.previousSecretExpireTime!).getTime();
  t.true(Math.abs(expires - (Date.now() + 24 * 3_600_000)) < 60_000, "24 hours by default");
  const again = await a.rotateWebhookSecret({ endpointId: endpoint!.id, previousSecretValidity: durationFromMs(0) });
  t.is(again.endpoint!.previousSecretExpireTime, undefined);
  const { secret, previous_secret } = await db
    .selectFrom("webhook_endpoints")
    .select(["secret", "previous_secret"])
    .where("merchant_id", "=", api.merchantA.merchantId)
    .where("endpoint_id", "=", endpoint!.id)
    .executeTakeFirstOrThrow();
  t.is(secret, again.signingSecret);
  t.is(previous_secret, null);
  await rejection(
    t,
    a.rotateWebhookSecret({ endpointId: endpoint!.id, previousSecretValidity: durationFromMs(8 * 24 * 3_600_000) }),
    Code.InvalidArgument,
  );
});

test.serial("ListWebhookEndpoints pages in creation order", async (t) => {
  const { endpoints: all } = await a.listWebhookEndpoints({ pageSize: 100 });
  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await a.listWebhookEndpoints({ pageSize: 2, pageToken });
    t.true(page.endpoints.length <= 2);
    seen.push(...page.endpoints.map((e) => e.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  t.deepEqual(
    seen,
    all.map((e) => e.id),
  );
  t.deepEqual([...seen].sort(), seen);
});

test.serial("dead letters: listed newest first, replayed once to pending with a fresh budget, then not again", async (t) => {
  const { endpoint } = await a.createWebhookEndpoint({ url: "https://hooks.example.com/dead", eventTypes: ["*"] });
  const first = await deadLetter(api.merchantA.merchantId, endpoint!.id);
  const second = await deadLetter(api.merchantA.merchantId, endpoint!.id);
  const { deadLetters } = await a.listDeadLetters({ endpointId: endpoint!.id });
  t.deepEqual(
    deadLetters.map((d) => d.id),
    [second, first],
  );
  t.is(deadLetters[0]!.state, WebhookDeliveryState.DEAD);
  t.is(deadLetters[0]!.lastStatusCode, 503);
  const page = await a.listDeadLetters({ endpointId: endpoint!.id, pageSize: 1 });
  t.deepEqual(
    page.deadLetters.map((d) => d.id),
    [second],
  );
  t.deepEqual(
    (await a.listDeadLetters({ endpointId: endpoint!.id, pageToken: page.nextPageToken })).deadLetters.map((d) => d.id),
    [first],
  );

  const { delivery } = await a.replayDeadLetter({ deliveryId: first });
  t.is(delivery!.state, WebhookDeliveryState.PENDING);
  t.is(delivery!.attempts, 0);
  const e = await rejection(t, a.replayDeadLetter({ deliveryId: first }), Code.FailedPrecondition);
  t.is(errorInfo(e)?.reason, "NOT_A_DEAD_LETTER");
  t.deepEqual(
    (await a.listDeadLetters({ endpointId: endpoint!.id })).deadLetters.map((d) => d.id),
    [second],
  );
  t.is((await a.replayAllDeadLetters({ endpointId: endpoint!.id })).replayedCount, 1n);
  t.deepEqual((await a.listDeadLetters({ endpointId: endpoint!.id })).deadLetters, []);
});

test.serial("DeleteWebhookEndpoint removes the endpoint and its deliveries", async (t) => {
  const { endpoint } = await a.createWebhookEndpoint({ url: "https://hooks.example.com/delete", eventTypes: ["*"] });
  await deadLetter(api.merchantA.merchantId, endpoint!.id);
  await a.deleteWebhookEndpoint({ endpointId: endpoint!.id });
  await rejection(t, a.getWebhookEndpoint({ endpointId: endpoint!.id }), Code.NotFound);
  await rejection(t, a.deleteWebhookEndpoint({ endpointId: endpoint!.id }), Code.NotFound);
  const left = await db
    .selectFrom("webhook_deliveries")
    .select("delivery_id")
    .where("merchant_id", "=", api.merchantA.merchantId)
    .where("endpoint_id", "=", endpoint!.id)
    .execute();
  t.deepEqual(left, []);
});

test.serial("merchant B gets NOT_FOUND for every call on A's endpoints and dead letters, exactly as for missing ones", async (t) => {
  const { endpoint } = await a.createWebhookEndpoint({ url: "https://hooks.example.com/private", eventTypes: ["*"] });
  const id = endpoint!.id;
  const letter = await deadLetter(api.merchantA.merchantId, id);
  const missing = newUlid();
  const calls: [string, (x: string) => Promise<unknown>][] = [
    ["get", (x) => b.getWebhookEndpoint({ endpointId: x })],
    ["delete", (x) => b.deleteWebhookEndpoint({ endpointId: x })],
    ["rotate", (x) => b.rotateWebhookSecret({ endpointId: x })],
    ["listDeadLetters", (x) => b.listDeadLetters({ endpointId: x })],
    ["replayAll", (x) => b.replayAllDeadLetters({ endpointId: x })],
  ];
  for (const [name, call] of calls) {
    const theirs = await rejection(t, call(id), Code.NotFound);
    const none = await rejection(t, call(missing), Code.NotFound);
    t.is(theirs.rawMessage.replace(id, "X"), none.rawMessage.replace(missing, "X"), name);
  }
  const theirs = await rejection(t, b.replayDeadLetter({ deliveryId: letter }), Code.NotFound);
  const none = await rejection(t, b.replayDeadLetter({ deliveryId: missing }), Code.NotFound);
  t.is(theirs.rawMessage.replace(letter, "X"), none.rawMessage.replace(missing, "X"));
  t.deepEqual((await b.listWebhookEndpoints({})).endpoints, []);
  t.deepEqual((await b.listDeadLetters({})).deadLetters, []);
  t.is((await b.replayAllDeadLetters({})).replayedCount, 0n);
  // A's endpoint, secret and dead letter are untouched.
  t.deepEqual((await a.getWebhookEndpoint({ endpointId: id })).endpoint, endpoint);
  t.deepEqual(
    (await a.listDeadLetters({ endpointId: id })).deadLetters.map((d) => d.id),
    [letter],
  );
});

test.serial("at most 20 endpoints per merchant", async (t) => {
  const { endpoints } = await b.listWebhookEndpoints({ pageSize: 100 });
  for (let i = endpoints.length; i < 20; i++) await b.createWebhookEndpoint({ url: `https://hooks.example.com/b${i}`, eventTypes: ["*"] });
  const e = await rejection(
    t,
    b.createWebhookEndpoint({ url: "https://hooks.example.com/b21", eventTypes: ["*"] }),
    Code.FailedPrecondition,
  );
  t.is(errorInfo(e)?.reason, "TOO_MANY_ENDPOINTS");
  t.true(
    (await a.createWebhookEndpoint({ url: "https://hooks.example.com/a-more", eventTypes: ["*"] })).endpoint !== undefined,
    "A is not affected",
  );
});
