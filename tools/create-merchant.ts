/**
 * `npm run merchant:create -- "Shop name"`: creates a merchant and prints its
 * first API key. The key is shown once; only its hash is stored.
 */
import { createMerchant } from "@stockroom/common/rpc";
import { parseApiConfig, unavailableBackend } from "@stockroom/common";
import { stopOnOutage } from "./outage.ts";
import { createDatabase, type CommonTables } from "@stockroom/common/db";

const name = process.argv.slice(2).join(" ").trim();
if (name === "" || name.length > 200) {
  console.error('usage: npm run merchant:create -- "Shop name"   (1 to 200 characters)');
  process.exit(2);
}
const { databaseUrl } = parseApiConfig(process.env);
const db = createDatabase<CommonTables>({ url: databaseUrl, poolSize: 1 });
try {
  const { merchantId, apiKey } = await createMerchant(db, name);
  console.log(`merchant_id: ${merchantId}\napi_key:     ${apiKey}\n\nKeep the key secret: it cannot be shown again.`);
} catch (error) {
  if (unavailableBackend(error)) stopOnOutage("merchant:create", error);
  else {
    console.error(`could not create the merchant: ${(error as Error).message}\n(is the database migrated? run: npm run migrate)`);
    process.exitCode = 1;
  }
} finally {
  await db.destroy();
}
