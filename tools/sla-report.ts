/**
 * `npm run sla:report -- --since 24h [--until 1h] [--merchant <id>] [--json] [--slo <file>]`
 *
 * Per merchant, over the window: bulk jobs (items/s, time-to-complete p50
 * and p99), single-edit p50/p99 and server error rate, order p99 and server
 * error rate, checked against the SLOs of the merchant's tier
 * (tools/observability/slo.json). Prints a table, or JSON with --json. Reads
 * DATABASE_URL. Exits 0 whether SLOs were met or not; the report says.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseApiConfig } from "@stockroom/common";
import { createDatabase } from "@stockroom/common/db";
import { buildSlaReport, formatSlaTable, parseWhen, type SloTable } from "./sla/report.ts";
import type { StockroomTables } from "./tables.ts";
import { stopOnOutage } from "./outage.ts";

const { values } = parseArgs({
  options: {
    since: { type: "string", default: "24h" },
    until: { type: "string" },
    merchant: { type: "string" },
    json: { type: "boolean", default: false },
    slo: { type: "string", default: path.join(import.meta.dirname, "observability", "slo.json") },
  },
});
const now = new Date();
const window = { since: parseWhen(values.since, now), until: values.until ? parseWhen(values.until, now) : now };
if (window.since >= window.until) throw new Error(`--since ${values.since} is not before --until ${values.until ?? "now"}`);
const slo = JSON.parse(readFileSync(values.slo, "utf8")) as SloTable;
const db = createDatabase<StockroomTables>({ url: parseApiConfig(process.env).databaseUrl, poolSize: 2 });
try {
  const report = await buildSlaReport(db, window, slo, { merchantId: values.merchant });
  process.stdout.write(`${values.json ? JSON.stringify(report, null, 2) : formatSlaTable(report)}\n`);
} catch (error) {
  stopOnOutage("sla:report", error);
} finally {
  await db.destroy();
}
