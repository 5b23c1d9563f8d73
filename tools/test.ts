/**
 * `npm test`: type-check everything, lint and check formatting (Biome), then
 * run every ava test file (contracts lint/breaking/codegen checks included)
 * against the real MariaDB and NATS (the MariaDB tier), then the database-
 * facing files of the Vitess tier (VITESS_TIER below) again through vtgate:
 * a local Vitess 24 cluster (tools/vitess/vttestserver.sh --test-pool) whose
 * keyspaces, 2 shards each, the files take as their databases
 * (services/common/testing, testDatabaseUrl).
 *
 *   npm test                        both tiers
 *   npm test -- <ava args/files>    the MariaDB tier only, with those arguments
 *   npm test -- --vitess [files]    the Vitess tier only (its files, or those given)
 *   npm test -- --mariadb           the MariaDB tier only
 *
 * STOCKROOM_VITESS_PORT (23574) is vttestserver's base port (vtgate's MySQL
 * protocol on port + 3). It sits below Linux's ephemeral range (32768 and
 * up): a port in it can be taken by any outgoing connection of the suite
 * (33574 once was, and vtcombo could not bind).
 */
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import path from "node:path";
import { vitessPoolDir } from "@stockroom/common/testing";
import { startVitess, stopVitess, TEST_POOL } from "./vitess/cluster.ts";

const root = path.join(import.meta.dirname, "..");
const bin = (name: string) => path.join(root, "node_modules", ".bin", name);

/** The files the Vitess tier runs: every file whose subject is what the database does. */
export const VITESS_TIER = [
  "services/catalog/test/audit.test.ts",
  "services/catalog/test/seal-migration.test.ts",
  "services/catalog/test/concurrency.test.ts",
  "services/catalog/test/idempotency.test.ts",
  "services/catalog/test/isolation.test.ts",
  "services/catalog/test/merchandising.test.ts",
  "services/catalog/test/product-writes.test.ts",
  "services/catalog/test/products.test.ts",
  "services/catalog/test/update-if-current.test.ts",
  "services/bulk/test/pipeline.test.ts",
  "services/bulk/test/crash.test.ts",
  "services/bulk/test/rollback.test.ts",
  "services/bulk/test/audit-seal.test.ts",
  "services/bulk/test/read.test.ts",
  "services/orders/test/orders.test.ts",
  "services/orders/test/concurrency.test.ts",
  "services/orders/test/expiry.test.ts",
  "services/orders/test/watch.test.ts",
  "services/orders/test/idempotency.test.ts",
  "services/orders/test/bulk.test.ts",
  "services/search/test/search.test.ts",
  "services/search/test/projection.test.ts",
  "services/search/test/reindex.test.ts",
  "services/search/test/scripts.test.ts",
  "services/search/test/documents-migration.test.ts",
  "services/search/test/text-plans.test.ts",
  "services/events/test/relay.test.ts",
  "services/notify/test/api.test.ts",
  "services/events/test/migrations.test.ts",
  "services/notify/test/migrations.test.ts",
  "services/common/test/vitess-shards.test.ts",
  "services/common/test/api-keys.test.ts",
  "services/bulk/test/formats.test.ts",
  "services/events/test/relay-vstream.test.ts",
  "services/notify/test/delivery.test.ts",
  "tools/test/shard-scans.test.ts",
];
const VITESS_CONCURRENCY = 2;

function step(title: string, cmd: string, args: string[]): void {
  console.log(`\n== ${title}`);
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`\n${title} failed`);
    process.exit(result.status ?? 1);
  }
}

interface TierResult {
  passed: number;
  failed: number;
  status: number;
  /** The failed tests' lines and ava's account of why, repeated at the end of the log. */
  failures: string[];
}

/** How many lines of ava's failure details a tier repeats at the end (a CI log reader may see only the tail). */
const FAILURE_LINES = 120;

/** ava runs ava; its own summary ("12 tests passed") is echoed, then counted. */
function ava(args: string[], env: NodeJS.ProcessEnv = process.env): TierResult {
  const run = spawnSync(bin("ava"), args, {
    cwd: root,
    env,
    stdio: ["inherit", "pipe", "inherit"],
    encoding: "utf8",
    maxBuffer: 256 * 1024 * 1024,
  });
  const out = run.stdout ?? "";
  process.stdout.write(out);
  const count = (re: RegExp) => Number(re.exec(out)?.[1] ?? 0);
  const marks = (mark: string) => out.split("\n").filter((l) => l.trimStart().startsWith(mark)).length;
  const passed = Math.max(count(/(\d+) tests? passed/), marks("✔"));
  const failed =
    Math.max(count(/(\d+) tests? failed/), marks("✘")) + count(/(\d+) uncaught exceptions?/) + count(/(\d+) unhandled rejections?/);
  const status = run.status ?? 1;
  const lines = out.split("\n");
  const failedLines = lines.filter((l) => /^\s*(✘|Uncaught exception|Unhandled rejection)/.test(l));
  // ava writes the details of each failure after the list, each after a "─" rule.
  const firstRule = lines.findIndex((l) => l.trim() === "─");
  const details = status !== 0 && firstRule >= 0 ? lines.slice(firstRule, firstRule + FAILURE_LINES) : [];
  return { passed, failed: failed > 0 || status === 0 ? failed : 1, status, failures: [...failedLines, ...details] };
}

async function vitessTier(files: string[]): Promise<TierResult> {
  const port = Number(process.env["STOCKROOM_VITESS_PORT"] ?? 23574);
  console.log(`\n== tests through Vitess (vtgate, 2 shards per keyspace): ${files.length} files`);
  const started = Date.now();
  const { child } = await startVitess(port);
  console.log(`vitess: serving after ${Math.round((Date.now() - started) / 1000)} s`);
  const vtgate = `mysql://root@127.0.0.1:${port + 3}`;
  rmSync(vitessPoolDir(vtgate), { recursive: true, force: true });
  const stop = () => void stopVitess(child);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    return ava([`--concurrency=${VITESS_CONCURRENCY}`, ...files], {
      ...process.env,
      STOCKROOM_TEST_VITESS: vtgate,
      STOCKROOM_TEST_VITESS_KEYSPACES: String(TEST_POOL),
    });
  } finally {
    await stopVitess(child);
    console.log(`vitess: tier done in ${Math.round((Date.now() - started) / 1000)} s`);
  }
}

const args = process.argv.slice(2);
const only = args.find((a) => a === "--vitess" || a === "--mariadb");
const avaArgs = args.filter((a) => a !== only);
const tiers = { mariadb: only !== "--vitess", vitess: only === "--vitess" || (only === undefined && avaArgs.length === 0) };

step("type-check (tsc)", bin("tsc"), ["-p", "."]);
step("type-check the dashboard (tsc -p web)", bin("tsc"), ["-p", "web"]);
step("lint and format check (biome ci)", bin("biome"), ["ci", "--colors=off", "."]);

const results: TierResult[] = [];
if (tiers.mariadb) {
  console.log("\n== tests (ava, MariaDB)");
  results.push(ava(avaArgs));
}
if (tiers.vitess) results.push(await vitessTier(only === "--vitess" && avaArgs.length > 0 ? avaArgs : VITESS_TIER));
// One plain "tests: N passed, N failed" line that any CI log reader understands.
const sum = (k: "passed" | "failed") => results.reduce((n, r) => n + r[k], 0);
const failures = results.flatMap((r) => r.failures);
if (failures.length > 0) console.log(`\n== what failed (repeated from above)\n${failures.join("\n")}`);
console.log(`\ntests: ${sum("passed")} passed, ${sum("failed")} failed`);
process.exit(results.find((r) => r.status !== 0)?.status ?? 0);
