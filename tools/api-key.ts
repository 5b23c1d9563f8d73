/**
 * `npm run api-key -- <create|list|revoke> <merchant id> [label | key id]`:
 * an operator's hand on a merchant's API keys, for when the merchant cannot
 * use ApiKeyService itself (every key lost, or one leaked and the merchant
 * unreachable). The rules are the service's: a new key is shown once, at
 * most 50 are active, and the last active key is not revoked (create its
 * successor first). Exit 2 on bad usage, 1 when the database refuses.
 */
import { addApiKey, listApiKeys, revokeApiKey } from "@stockroom/common/rpc";
import { DomainError, parseApiConfig, ULID_PATTERN, unavailableBackend } from "@stockroom/common";
import { createDatabase, type CommonTables } from "@stockroom/common/db";
import { stopOnOutage } from "./outage.ts";

/** How the keys' created_by and revoked_by name this tool. */
const OPERATOR = "operator";

const USAGE = `usage: npm run api-key -- create <merchant id> [label]
       npm run api-key -- list <merchant id>
       npm run api-key -- revoke <merchant id> <key id>`;

const [command, merchantId = "", ...rest] = process.argv.slice(2);
const arg = rest.join(" ").trim();
const usable =
  ULID_PATTERN.test(merchantId) &&
  ((command === "create" && arg.length <= 100) || (command === "list" && arg === "") || (command === "revoke" && ULID_PATTERN.test(arg)));
if (!usable) {
  console.error(USAGE);
  process.exit(2);
}

const { databaseUrl } = parseApiConfig(process.env);
const db = createDatabase<CommonTables>({ url: databaseUrl, poolSize: 1 });
try {
  if (command === "create") {
    const { apiKey, key } = await addApiKey(db, merchantId, arg, OPERATOR);
    console.log(`key_id:  ${key.keyId}\napi_key: ${apiKey}\n\nKeep the key secret: it cannot be shown again.`);
  } else if (command === "list") {
    const keys = await listApiKeys(db, merchantId, 1000);
    if (keys.length === 0) console.log(`merchant ${merchantId} has no API key (or does not exist)`);
    for (const k of keys) {
      const by = (who: string | null) => (who ? ` by ${who}` : "");
      const state = k.revokedAt ? `revoked ${k.revokedAt.toISOString()}${by(k.revokedBy)}` : "active";
      console.log(`${k.keyId}  created ${k.createdAt.toISOString()}${by(k.createdBy)}  ${state}  ${k.label}`);
    }
  } else {
    const key = await revokeApiKey(db, merchantId, arg, OPERATOR);
    if (!key) {
      console.error(`merchant ${merchantId} has no API key ${arg}`);
      process.exitCode = 1;
    } else if (!key.revokedNow) console.log(`${key.keyId} (${key.label}) was already revoked at ${key.revokedAt!.toISOString()}`);
    else console.log(`revoked ${key.keyId} (${key.label}) at ${key.revokedAt!.toISOString()}; servers refuse it within AUTH_CACHE_MS`);
  }
} catch (error) {
  if (unavailableBackend(error)) stopOnOutage("api-key", error);
  else {
    console.error(error instanceof DomainError ? error.message : `api-key failed: ${(error as Error).message}`);
    process.exitCode = 1;
  }
} finally {
  await db.destroy();
}
