/**
 * `npm run api-key`: an operator creates, lists and revokes a merchant's API
 * keys from the shell, under ApiKeyService's rules; a merchant that lost
 * every key gets a new one this way.
 */
import path from "node:path";
import test from "ava";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest, type CommonTables } from "@stockroom/common/db";
import { createKeyVerifier, createMerchant } from "@stockroom/common/rpc";
import { dropTestDatabase, runProcess, testDatabaseUrl } from "@stockroom/common/testing";

const root = path.join(import.meta.dirname, "..", "..");
const url = testDatabaseUrl("api_key_tool");
const db = createDatabase<CommonTables>({ url, poolSize: 2 });

test.before(async () => {
  await ensureDatabase(url);
  await migrateToLatest(db, [commonMigrations]);
});

test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

const tool = (...args: string[]) =>
  runProcess(process.execPath, [path.join(root, "tools", "api-key.ts"), ...args], { env: { DATABASE_URL: url } });

test("a merchant that lost its key gets a new one; list shows both; the old one is revoked, never the last", async (t) => {
  const { merchantId, keyId } = await createMerchant(db, "Locked out");
  const created = await tool("create", merchantId, "issued by support");
  t.is(created.code, 0, created.output);
  const apiKey = /api_key: (srk_\S+)/.exec(created.output)?.[1];
  t.truthy(apiKey, created.output);
  t.is((await createKeyVerifier(db, 0)(apiKey!)).merchantId, merchantId, "the new key works");

  const listed = await tool("list", merchantId);
  t.is(listed.code, 0);
  t.regex(listed.output, /by operator {2}active {2}issued by support\n.*Z {2}active {2}initial key/);

  const revoked = await tool("revoke", merchantId, keyId);
  t.is(revoked.code, 0, revoked.output);
  t.regex(revoked.output, new RegExp(`^revoked ${keyId} \\(initial key\\) at \\S+; servers refuse it within AUTH_CACHE_MS`));
  t.regex((await tool("list", merchantId)).output, new RegExp(`${keyId} .* revoked \\S+ by operator {2}initial key`));
  const again = await tool("revoke", merchantId, keyId);
  t.is(again.code, 0, again.output);
  t.regex(again.output, new RegExp(`^${keyId} \\(initial key\\) was already revoked at \\S+\n$`), "a repeat says so");

  const newKeyId = /key_id: {2}(\S+)/.exec(created.output)![1]!;
  const last = await tool("revoke", merchantId, newKeyId);
  t.is(last.code, 1);
  t.regex(last.output, /last active API key: create its successor before revoking it/);
});

test("bad usage exits 2 with the usage; an unknown merchant or key exits 1 saying so", async (t) => {
  for (const args of [
    [],
    ["create"],
    ["create", "not-a-ulid"],
    ["revoke", "01M9376YDJY8QW4Q5P40H5M97W"],
    ["drop", "01M9376YDJY8QW4Q5P40H5M97W"],
  ]) {
    const run = await tool(...args);
    t.is(run.code, 2, args.join(" "));
    t.regex(run.output, /^usage: npm run api-key -- create <merchant id> \[label\]/);
  }
  const unknown = await tool("create", "01M9376YDJY8QW4Q5P40H5M97W", "x");
  t.is(unknown.code, 1);
  t.regex(unknown.output, /merchant "01M9376YDJY8QW4Q5P40H5M97W" not found/);
  const { merchantId } = await createMerchant(db, "No such key");
  const noKey = await tool("revoke", merchantId, "01M9376YDJY8QW4Q5P40H5M97W");
  t.is(noKey.code, 1);
  t.regex(noKey.output, /has no API key 01M9376YDJY8QW4Q5P40H5M97W/);
});
