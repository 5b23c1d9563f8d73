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
 * STOCKROOM_VITESS_PORT (33574) is vttestserver's base port (vtgate's MySQL
 * protocol on port + 3).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { vitessPoolDir } from "@stockroom/common/testing";

const root = path.join(import.meta.dirname, "..");
const bin = (name: string) => path.join(root, "node_modules", ".bin", name);

/** The files the Vitess tier runs: every file whose subject is what the database does. */
export const VITESS_TIER = [
  "services/catalog/test/audit.test.ts",
  "services/catalog/test/concurrency.test.ts",
  "services/catalog/test/idempotency.test.ts",
  "services/catalog/test/isolation.test.ts",
  "services/catalog/test/merchandising.test.ts",
  "services/catalog/test/product-writes.test.ts",
  "services/catalog/test/products.test.ts",
  "services/bulk/test/pipeline.test.ts",
  "services/bulk/test/crash.test.ts",
  "services/bulk/test/rollback.test.ts",
  "services/bulk/test/audit-seal.test.ts",
  "services/orders/test/orders.test.ts",
  "services/orders/test/concurrency.test.ts",
  "services/orders/test/expiry.test.ts",
  "services/orders/test/idempotency.test.ts",
  "services/orders/test/bulk.test.ts",
  "services/search/test/search.test.ts",
  "services/search/test/projection.test.ts",
  "services/search/test/reindex.test.ts",
  "services/events/test/relay.test.ts",
  "services/notify/test/api.test.ts",
  "services/events/test/migrations.test.ts",
  "services/notify/test/migrations.test.ts",
  "services/common/test/vitess-shards.test.ts",
  "services/bulk/test/formats.test.ts",
  "services/events/test/relay-vstream.test.ts",
  "services/notify/test/delivery.test.ts",
  "tools/test/shard-scans.test.ts",
];
/** Keyspaces in the pool: a file holds one or two at a time, a few files run at once. */
const POOL = 12;
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
}

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
  return { passed, failed: failed > 0 || status === 0 ? failed : 1, status };
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** startVitess starts vttestserver with the test pool and resolves once vtgate serves every keyspace. */
async function startVitess(port: number): Promise<ChildProcess> {
  const vitessBin = path.join(root, ".stockroom", "vitess", "bin");
  const built = ["vttestserver", "mysqlctl", "vtcombo"].every((b) => existsSync(path.join(vitessBin, b)));
  if (!built && spawnSync("go", ["version"]).status !== 0) {
    console.error(
      "\nThe Vitess tier needs Vitess 24 (vttestserver), built from source with Go ≥ 1.24 into .stockroom/vitess (a few minutes, once).\n" +
        "  Install Go 1.26 from https://go.dev/dl/ (or your distribution's golang package if it is that recent) and run npm test again;\n" +
        "  `npm test -- --mariadb` runs the MariaDB tier alone.",
    );
    process.exit(1);
  }
  if (await reachable(port + 3))
    throw new Error(`something already listens on 127.0.0.1:${port + 3}; stop it or set STOCKROOM_VITESS_PORT`);
  const script = path.join(root, "tools", "vitess", "vttestserver.sh");
  // Its log goes to a file: ava runs synchronously meanwhile, and a pipe nobody drains would stall the cluster.
  const logFile = path.join(root, ".stockroom", "vitess", `vttestserver-${port}.log`);
  mkdirSync(path.dirname(logFile), { recursive: true });
  const out = openSync(logFile, "w");
  const child = spawn("nice", [script, String(port), "--test-pool", String(POOL)], {
    cwd: root,
    detached: true,
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  console.log(`vitess: starting vttestserver (log: ${path.relative(root, logFile)})`);
  const tail = () => readFileSync(logFile, "utf8").slice(-4000);
  let exited: number | null = null;
  child.once("exit", (code) => (exited = code ?? 1));
  const { createConnection } = await import("mysql2/promise");
  const deadline = Date.now() + 20 * 60_000; // a first build of Vitess takes minutes
  for (;;) {
    if (exited !== null) throw new Error(`vttestserver exited (${exited}) before serving:\n${tail()}`);
    if (Date.now() > deadline) throw new Error(`vttestserver did not serve within 20 min:\n${tail()}`);
    if (await reachable(port + 3)) {
      try {
        const conn = await createConnection({ host: "127.0.0.1", port: port + 3, user: "root" });
        try {
          const [rows] = await conn.query("SHOW DATABASES LIKE 'stockroom_t%'");
          if ((rows as unknown[]).length >= POOL) return child;
        } finally {
          await conn.end();
        }
      } catch {
        // vtgate is up but its tablets are not yet
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** stopVitess ends vttestserver's process group (it tears its mysqld down) and waits for it. */
async function stopVitess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(-child.pid!, "SIGTERM");
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }, 30_000);
  await exited;
  clearTimeout(timer);
}

async function vitessTier(files: string[]): Promise<TierResult> {
  const port = Number(process.env["STOCKROOM_VITESS_PORT"] ?? 33574);
  console.log(`\n== tests through Vitess (vtgate, 2 shards per keyspace): ${files.length} files`);
  const started = Date.now();
  const child = await startVitess(port);
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
      STOCKROOM_TEST_VITESS_KEYSPACES: String(POOL),
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
console.log(`\ntests: ${sum("passed")} passed, ${sum("failed")} failed`);
process.exit(results.find((r) => r.status !== 0)?.status ?? 0);
