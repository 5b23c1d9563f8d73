/**
 * `npm run db:grants -- --user stockroom_app --database stockroom [--host %] [--apply]`
 *
 * Prints (or, with --apply, runs) the GRANTs of the services' database user:
 * SELECT, INSERT, UPDATE, DELETE on every table of the database, except the
 * audit trail (product_changes), which gets SELECT, INSERT and UPDATE of its
 * seal columns only. Run it as the admin user (DATABASE_URL) after every
 * migration that adds a table; the user must exist (CREATE USER) first.
 * Exits 1 with --apply when the user holds database- or server-wide
 * privileges that would override the table grants.
 */
import { parseArgs } from "node:util";
import { parseApiConfig } from "@stockroom/common";
import { createDatabase, applyGrants, planGrants } from "@stockroom/common/db";
import { APPEND_ONLY_TABLES } from "@stockroom/catalog";
import { stopOnOutage } from "./outage.ts";

const { values } = parseArgs({
  options: {
    user: { type: "string" },
    database: { type: "string" },
    host: { type: "string", default: "%" },
    apply: { type: "boolean", default: false },
  },
});
if (!values.user) {
  console.error("usage: npm run db:grants -- --user <service user> [--database <name>] [--host %] [--apply]");
  process.exit(2);
}
const { databaseUrl } = parseApiConfig(process.env);
const database = values.database ?? decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
const db = createDatabase({ url: databaseUrl, poolSize: 1 });
try {
  const plan = await planGrants(db, { database, user: values.user, host: values.host, appendOnly: APPEND_ONLY_TABLES });
  for (const statement of plan.statements) console.log(`${statement};`);
  if (values.apply) {
    try {
      await applyGrants(db, plan);
    } catch (error) {
      console.error(
        `could not apply: ${(error as Error).message}\n(the account must exist first: CREATE USER '${values.user}'@'${values.host}' IDENTIFIED BY '…')`,
      );
      process.exit(1);
    }
  }
  for (const warning of plan.warnings) console.error(`warning: ${warning}`);
  if (values.apply) {
    console.error(`applied ${plan.statements.length} statements for '${values.user}'@'${values.host}' on ${database}`);
    if (plan.warnings.length > 0) process.exitCode = 1;
  }
} catch (error) {
  stopOnOutage("db:grants", error);
} finally {
  await db.destroy();
}
