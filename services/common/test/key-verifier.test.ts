/**
 * The API-key verifier's cache against the real database: a key's checks
 * are one read however many calls arrive together, a busy key is read again
 * before its entry runs out (no call waits on the database for it), and a
 * revoked key is still refused within the cache time.
 */
import { setTimeout as delay } from "node:timers/promises";
import test from "ava";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest, type CommonTables } from "../src/db/index.ts";
import { createApiKey, createKeyVerifier, createMerchant, revokeApiKey } from "../src/rpc/auth.ts";
import { UnauthenticatedError } from "../src/errors.ts";
import { testDatabaseUrl, dropTestDatabase } from "../testing/index.ts";

const url = testDatabaseUrl("common_key_verifier");
await ensureDatabase(url);
const reads: string[] = [];
const db = createDatabase<CommonTables>({ url, poolSize: 4, observe: (text) => text.includes("api_keys") && reads.push(text) });
await migrateToLatest(db, [commonMigrations]);
test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

test.serial(
  "concurrent checks of a key are one read; a busy key is read again before it runs out; a revoked key is refused within the cache time",
  async (t) => {
    const { merchantId, apiKey, keyId } = await createMerchant(db, "verifier");
    const verify = createKeyVerifier(db, 500);
    reads.length = 0;
    const principals = await Promise.all(Array.from({ length: 50 }, () => verify(apiKey)));
    t.true(principals.every((p) => p.merchantId === merchantId));
    t.is(reads.length, 1, "fifty concurrent checks of an uncached key: one read");

    // In the entry's last fifth: answered from the cache at once, with one read ahead.
    await delay(430);
    reads.length = 0;
    await Promise.all(Array.from({ length: 20 }, () => verify(apiKey)));
    await delay(50); // the read ahead runs on after the calls were answered
    t.is(reads.length, 1, "one read ahead, shared by the calls");
    await delay(50);
    // The read ahead renewed the entry: past the first entry's end, still no read.
    reads.length = 0;
    await verify(apiKey);
    t.is(reads.length, 0, "renewed by the read ahead");

    await createApiKey(db, merchantId, "its successor"); // the last active key cannot be revoked
    t.like(await revokeApiKey(db, merchantId, keyId, "operator"), { keyId, revokedBy: "operator" });
    await delay(520);
    await t.throwsAsync(verify(apiKey), { instanceOf: UnauthenticatedError }, "revoked: refused once the entry ran out");
    await t.throwsAsync(verify("srk_malformed"), { instanceOf: UnauthenticatedError });
  },
);
