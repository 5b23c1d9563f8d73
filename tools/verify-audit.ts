/**
 * `npm run audit:verify -- --merchant <id> [--json]`: checks a merchant's
 * tamper-evident audit chain (services/catalog/src/audit.ts) and prints each
 * problem with its chain position, change id and SKU. Exits 1 if there is any.
 */
import { parseArgs } from "node:util";
import { parseApiConfig } from "@stockroom/common";
import { createDatabase } from "@stockroom/common/db";
import { verifyAuditChain, type CatalogTables } from "@stockroom/catalog";
import { stopOnOutage } from "./outage.ts";

const { values } = parseArgs({ options: { merchant: { type: "string" }, json: { type: "boolean", default: false } } });
if (!values.merchant) {
  console.error("usage: npm run audit:verify -- --merchant <merchant id> [--json]");
  process.exit(2);
}
const { databaseUrl } = parseApiConfig(process.env);
const db = createDatabase<CatalogTables>({ url: databaseUrl, poolSize: 1 });
try {
  const result = await verifyAuditChain(db, values.merchant);
  if (values.json) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(
      `merchant ${result.merchantId}: ${result.sealed} sealed entries (head at ${result.headSeq}), ${result.unsealed} not sealed yet`,
    );
    for (const p of result.problems) {
      const where = [p.sealSeq !== undefined && `seal_seq ${p.sealSeq}`, p.changeId && `change ${p.changeId}`, p.sku && `sku ${p.sku}`]
        .filter(Boolean)
        .join(", ");
      console.log(`  ${p.kind}${where ? ` (${where})` : ""}: ${p.detail}`);
    }
    console.log(result.problems.length === 0 ? "chain intact" : `${result.problems.length} problem(s)`);
  }
  if (result.problems.length > 0) process.exitCode = 1;
} catch (error) {
  stopOnOutage("audit:verify", error);
} finally {
  await db.destroy();
}
