/**
 * ApiKeyService: a merchant creates, lists and revokes its own API keys with
 * one of them. A revoked key is refused once the servers' key cache runs out
 * (AUTH_CACHE_MS, 300 ms here); the last active key cannot be revoked.
 */
import { setTimeout as delay } from "node:timers/promises";
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { ApiKeyService } from "@stockroom/sdk/gen/stockroom/account/v1/api_key_service_pb.js";
import { ErrorInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import type { Logger } from "../src/observe/log.ts";
import { apiKeysModule, createMerchant, MAX_ACTIVE_KEYS } from "../src/rpc/index.ts";
import { startTestApi, type TestApi, type TestMerchant } from "../testing/index.ts";

const CACHE_MS = 300;
let api: TestApi;
/** What the service logged: each key created or revoked. */
const logged: { msg: string; fields: Record<string, unknown> }[] = [];
const log: Logger = {
  info: (msg, fields = {}) => logged.push({ msg, fields }),
  warn: (msg, fields = {}) => logged.push({ msg, fields }),
  error: (msg, fields = {}) => logged.push({ msg, fields }),
};

test.before(async () => {
  api = await startTestApi("api_keys", (db) => [apiKeysModule(db, { log })], { config: { authCacheMs: CACHE_MS } });
});

test.after.always(async () => {
  await api?.close();
});

const keys = (merchant: TestMerchant) => api.client(ApiKeyService, merchant);
/** keyIdOf reads the key id out of a merchant's key: srk_<merchant id>_<key id>_<secret>. */
const keyIdOf = (merchant: TestMerchant) => merchant.apiKey.split("_")[2]!;

function reason(error: unknown): string | undefined {
  return ConnectError.from(error).findDetails(ErrorInfoSchema)[0]?.reason;
}

test("rotate a key: create its successor, move to it, revoke the old one; the old one is refused within the cache's lifetime", async (t) => {
  const first = api.merchantA;
  const created = await keys(first).createApiKey({ label: "ERP sync" });
  t.regex(created.apiKey, new RegExp(`^srk_${first.merchantId}_${created.key!.id}_[A-Za-z0-9_-]{43}$`));
  t.like(created.key, { label: "ERP sync", current: false, createdBy: `api_key:${keyIdOf(first)}` });
  t.is(created.key!.revokeTime, undefined);
  const second: TestMerchant = { merchantId: first.merchantId, apiKey: created.apiKey };

  // Listed newest first, without secrets; `current` is the key each call is made with.
  const listed = await keys(second).listApiKeys({});
  t.deepEqual(
    listed.keys.map((k) => [k.label, k.current]),
    [
      ["ERP sync", true],
      ["initial key", false],
    ],
  );
  const secret = created.apiKey.slice(-43);
  t.false(JSON.stringify(listed, (_k, v) => (typeof v === "bigint" ? String(v) : v)).includes(secret), "no secret is listed");
  const oldId = listed.keys[1]!.id;

  const revoked = await keys(second).revokeApiKey({ keyId: oldId });
  t.truthy(revoked.key?.revokeTime);
  t.is(revoked.key?.revokedBy, `api_key:${created.key!.id}`, "revoked by the successor");
  t.is(revoked.key?.createdBy, "", "a merchant's first key has no creator recorded");
  t.like(await keys(second).revokeApiKey({ keyId: oldId }), { key: { id: oldId } }, "again: the key as it is");
  // The security trail: one line per key created or revoked (a repeat is not), with no secret.
  t.deepEqual(
    logged.filter((l) => l.fields["key_id"] === created.key!.id || l.fields["key_id"] === oldId),
    [
      {
        msg: "api key created",
        fields: { merchant_id: first.merchantId, key_id: created.key!.id, by: `api_key:${oldId}`, label: "ERP sync" },
      },
      {
        msg: "api key revoked",
        fields: { merchant_id: first.merchantId, key_id: oldId, by: `api_key:${created.key!.id}`, label: "initial key" },
      },
    ],
  );
  t.false(JSON.stringify(logged).includes(secret), "no secret is logged");
  await delay(CACHE_MS + 100);
  const refused = await t.throwsAsync(keys(first).listApiKeys({}));
  t.is(ConnectError.from(refused).code, Code.Unauthenticated);
  t.like((await keys(second).listApiKeys({})).keys[1], { id: oldId, current: false });
});

test("the last active key cannot be revoked; another merchant's key is not found; labels are checked", async (t) => {
  const merchant = api.merchantB;
  const [only] = (await keys(merchant).listApiKeys({})).keys;
  const last = await t.throwsAsync(keys(merchant).revokeApiKey({ keyId: only!.id }));
  t.is(ConnectError.from(last).code, Code.FailedPrecondition);
  t.is(reason(last), "LAST_ACTIVE_KEY");

  // Another merchant of its own: merchantA's first key is revoked by the rotation test running alongside.
  const other = await createMerchant(api.api.db, "Another");
  const othersKey = (await keys(other).listApiKeys({})).keys[0]!.id;
  for (const keyId of [othersKey, "not-a-key-id", ""]) {
    const missing = await t.throwsAsync(keys(merchant).revokeApiKey({ keyId }));
    t.is(ConnectError.from(missing).code, Code.NotFound, keyId);
  }
  for (const label of ["x".repeat(101), "tab\there"]) {
    const bad = await t.throwsAsync(keys(merchant).createApiKey({ label }));
    t.is(ConnectError.from(bad).code, Code.InvalidArgument);
  }
  t.like(await keys(merchant).createApiKey({ label: "x".repeat(100) }), { key: { label: "x".repeat(100) } });
});

test(`at most ${MAX_ACTIVE_KEYS} keys are active at once, also when created concurrently; the list pages through them newest first`, async (t) => {
  const merchant = await createMerchant(api.api.db, "Many keys");
  const results = await Promise.allSettled(
    Array.from({ length: MAX_ACTIVE_KEYS + 5 }, (_, i) => keys(merchant).createApiKey({ label: `k${i}` })),
  );
  const made = results.filter((r) => r.status === "fulfilled").length;
  t.is(made, MAX_ACTIVE_KEYS - 1, "the initial key counts");
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  t.true(refused.every((r) => reason(r.reason) === "TOO_MANY_KEYS"));

  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await keys(merchant).listApiKeys({ pageSize: 7, pageToken });
    seen.push(...page.keys.map((k) => k.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  t.is(seen.length, MAX_ACTIVE_KEYS);
  t.deepEqual(seen, [...seen].sort().reverse(), "newest first");
});
