/**
 * A rolling release across the 2026-12 expand migration, with the previous
 * release's real code: its worker process (services/bulk/src/worker-main.ts
 * of PREVIOUS_RELEASE, checked out from git) applies a 100,000-item job
 * staged by that release, the new release's migration runs while it does,
 * the new API writes a new field on products the job has not reached yet,
 * and new-release workers join on the same queue. Every item is applied
 * once, and nothing the old worker does not know is blanked.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readdir, readlink, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { sql } from "kysely";
import { commonMigrations, createDatabase, inTransaction, migrateToLatest } from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { createLogger } from "@stockroom/common/observe";
import { connectNats } from "@stockroom/common/nats";
import { testDatabaseUrl, waitFor, dropTestDatabase } from "@stockroom/common/testing";
import { catalogMigrations, lockProducts, writeProducts } from "@stockroom/catalog";
import { DEFAULT_QUEUE } from "../src/queue.ts";
import { bulkMigrations, type BulkDb } from "../src/store.ts";
import { startBulkWorker } from "../src/worker.ts";

/** The last commit of main before the 2026-12 product fields and chunk formats. */
const PREVIOUS_RELEASE = "bfc0bccd2512d865213a1eaeefd0ea47203337ce";
const ITEMS = 100_000;
const CHUNK = 1000;
const BRANDED = 1000;

const root = path.resolve(import.meta.dirname, "..", "..", "..");

/**
 * previousRelease checks PREVIOUS_RELEASE out of this clone's history into
 * .stockroom/releases (once) and gives it this checkout's node_modules, with
 * its own workspace packages: its code runs as it was released.
 */
async function previousRelease(): Promise<string> {
  const dir = path.join(root, ".stockroom", "releases", PREVIOUS_RELEASE.slice(0, 12));
  if (existsSync(path.join(dir, ".ready"))) return dir;
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  const archive = () =>
    execFileSync("sh", ["-c", `git -C "$0" archive "$1" | tar -x -C "$2"`, root, PREVIOUS_RELEASE, dir], { stdio: "pipe" });
  try {
    try {
      archive();
    } catch {
      // A shallow clone: fetch just that commit from where this clone came from.
      execFileSync("git", ["-C", root, "fetch", "--depth=1", "origin", PREVIOUS_RELEASE], { stdio: "pipe" });
      archive();
    }
  } catch (error) {
    throw new Error(
      `the previous release ${PREVIOUS_RELEASE} is not in this clone's history (a shallow clone?): run git fetch --unshallow`,
      { cause: error },
    );
  }
  const modules = path.join(dir, "node_modules");
  await mkdir(path.join(modules, "@stockroom"), { recursive: true });
  for (const entry of await readdir(path.join(root, "node_modules"))) {
    if (entry !== "@stockroom") await symlink(path.join(root, "node_modules", entry), path.join(modules, entry));
  }
  // Workspace links are relative (../../services/bulk): the same link in the release points at its own code.
  for (const pkg of await readdir(path.join(root, "node_modules", "@stockroom"))) {
    await symlink(await readlink(path.join(root, "node_modules", "@stockroom", pkg)), path.join(modules, "@stockroom", pkg));
  }
  await writeFile(path.join(dir, ".ready"), `${PREVIOUS_RELEASE}\n`);
  return dir;
}

/** The previous release stages the job: its migrations, a merchant, ITEMS products and a job repricing them all. */
const STAGE_SCRIPT = `
import { sql } from "kysely";
import { commonMigrations, createDatabase, migrateToLatest } from "@stockroom/common/db";
import { createMerchant } from "@stockroom/common/rpc";
import { catalogMigrations } from "@stockroom/catalog";
import { eventsMigrations } from "@stockroom/events";
import { bulkMigrations, createJob, finishStaging, stageLines } from "@stockroom/bulk";
const [url, n, chunkSize] = process.argv.slice(2);
const db = createDatabase({ url, poolSize: 4 });
await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
const { merchantId } = await createMerchant(db, "Rolling release merchant");
await sql\`INSERT INTO products (merchant_id, sku, product_id, title, description, price_minor, currency, stock, status, attributes, version, created_at, updated_at)
  SELECT \${merchantId}, CONCAT('ROLL-', LPAD(seq, 6, '0')), CONCAT('01JROLL', LPAD(seq, 19, '0')), CONCAT('Old ', seq), '', 100, 'EUR', 5, 'active', '{}', 1,
    NOW(3) - INTERVAL 1 DAY, NOW(3) - INTERVAL 1 DAY
  FROM seq_0_to_\${sql.lit(Number(n) - 1)}\`.execute(db);
const { jobId } = await createJob(db, { merchantId, requestId: "", format: "csv", conflictPolicy: "overwrite", dryRun: false, fileName: "reprice.csv" });
async function* lines() {
  for (let i = 0; i < Number(n); i++) {
    yield { line: i + 2, kind: "valid", item: { sku: "ROLL-" + String(i).padStart(6, "0"), title: "New " + i, priceMinor: 200 + (i % 7), currency: "EUR" } };
  }
}
const staged = await stageLines(db, { merchantId, jobId }, lines(), { chunkSize: Number(chunkSize), stagedVersions: false });
await finishStaging(db, { merchantId, jobId }, staged, false);
console.log(JSON.stringify({ merchantId, jobId, chunks: staged.chunks }));
await db.destroy();
`;

const url = testDatabaseUrl("bulk_rolling");
const suffix = randomBytes(4).toString("hex");
const queue = {
  ...DEFAULT_QUEUE,
  stream: `BULK_ROLL_${suffix}`,
  subjectPrefix: `t_${suffix}.roll.chunk`,
  durable: "workers",
  ackWaitMs: 30_000,
};
const nats = await connectNats({ servers: "127.0.0.1:4222", name: "bulk-rolling-test" });
const db: BulkDb = createDatabase({ url, poolSize: 8 });
const children: ChildProcess[] = [];
test.after.always(async () => {
  for (const child of children) child.kill("SIGKILL");
  await nats.jsm.streams.delete(queue.stream).catch(() => false);
  await nats.close();
  await db.destroy();
  await dropTestDatabase(url);
});

function run(cwd: string, args: string[], env: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (err += d));
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${args.join(" ")} exited ${code}: ${err}`))));
  });
}

test("a 100,000-item job of the previous release applies once across the migration, with old and new workers side by side", async (t) => {
  const release = await previousRelease();
  await run(root, ["-e", `import("@stockroom/common/db").then((m) => m.ensureDatabase(${JSON.stringify(url)}))`]);
  await writeFile(path.join(release, "roll-stage.ts"), STAGE_SCRIPT);
  const staged = JSON.parse(await run(release, ["roll-stage.ts", url, String(ITEMS), String(CHUNK)])) as {
    merchantId: string;
    jobId: string;
    chunks: number;
  };
  t.is(staged.chunks, ITEMS / CHUNK);
  const { merchantId, jobId } = staged;

  // The previous release's worker process, as Nomad runs it (its reconciler publishes the job's chunks).
  let oldLog = "";
  const oldWorker = spawn(process.execPath, ["services/bulk/src/worker-main.ts"], {
    cwd: release,
    env: {
      ...process.env,
      DATABASE_URL: url,
      NATS_URL: "nats://127.0.0.1:4222",
      LOG_LEVEL: "warn",
      BULK_STREAM: queue.stream,
      BULK_SUBJECT_PREFIX: queue.subjectPrefix,
      BULK_DURABLE: queue.durable,
      BULK_WORKER_CONCURRENCY: "2",
      BULK_RECONCILE_EVERY_MS: "500",
      BULK_PRUNE_EVERY_MS: "0",
      AUDIT_SEAL_EVERY_MS: "0",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(oldWorker);
  oldWorker.stdout!.on("data", (d: Buffer) => (oldLog += d));
  oldWorker.stderr!.on("data", (d: Buffer) => (oldLog += d));

  const appliedChunks = async () =>
    Number(
      (
        await db
          .selectFrom("bulk_job_chunks")
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .where("merchant_id", "=", merchantId)
          .where("job_id", "=", jobId)
          .where("state", "=", "applied")
          .executeTakeFirstOrThrow()
      ).n,
    );
  await waitFor("the old worker to apply chunks", async () => ((await appliedChunks()) >= 5 ? true : undefined), 60_000);

  // Expand, while the old worker applies chunks.
  const beforeMigration = await appliedChunks();
  const started = performance.now();
  const migrated = await migrateToLatest(db, [commonMigrations, catalogMigrations, bulkMigrations, eventsMigrations]);
  const migrationMs = performance.now() - started;
  t.deepEqual(migrated.sort(), [
    "bulk/2026_12_03_090000_add_bulk_job_chunks_format",
    "bulk/2026_12_03_120000_add_bulk_job_chunks_items",
    "bulk/2026_12_05_090000_add_bulk_jobs_actors",
    "bulk/2026_12_05_120000_add_bulk_jobs_staging_heartbeat",
    "catalog/2026_12_03_090000_add_products_merchandising_fields",
    "catalog/2026_12_03_120000_add_product_changes_format",
    "catalog/2026_12_04_140000_presize_product_changes_hashes",
    "catalog/2026_12_04_150000_seal_product_changes_in_place",
    "common/2026_12_05_210000_add_api_keys_created_revoked_by",
    "events/2026_12_03_120000_add_outbox_event_count",
  ]);
  t.log(
    `migration ${migrationMs.toFixed(0)} ms with the old worker applying chunks (${beforeMigration} of ${staged.chunks} applied before)`,
  );

  // The new release's API sets a brand on the last products of the job, which the old worker has not reached.
  const last = Array.from({ length: BRANDED }, (_, i) => `ROLL-${String(ITEMS - BRANDED + i).padStart(6, "0")}`);
  await inTransaction(db, async (trx) => {
    const current = await lockProducts(trx, merchantId, last);
    await writeProducts(
      trx,
      { merchantId, actor: "test", sourceKind: "api" },
      [...current.values()].map((p) => ({ kind: "update" as const, before: p, fields: { ...p, brand: "Acme" }, changedFields: ["brand"] })),
    );
  });
  await waitFor(
    "the old worker to go on after the migration",
    async () => ((await appliedChunks()) > beforeMigration + 2 ? true : undefined),
    60_000,
  );

  // New-release workers join on the same durable consumer.
  const joinedAt = new Date();
  const worker = await startBulkWorker({
    db,
    nats,
    queue,
    log: createLogger("new-worker", "silent"),
    concurrency: 2,
    reconcileEveryMs: 500,
  });
  t.teardown(() => worker.stop());
  const job = await waitFor(
    "the job to end",
    async () => {
      const j = await db
        .selectFrom("bulk_jobs")
        .selectAll()
        .where("merchant_id", "=", merchantId)
        .where("job_id", "=", jobId)
        .executeTakeFirst();
      return j && ["succeeded", "partially_succeeded", "failed", "cancelled"].includes(j.state) ? j : undefined;
    },
    240_000,
  );
  oldWorker.kill("SIGTERM");
  t.is(job.state, "succeeded");
  t.is(Number(job.applied_items), ITEMS);
  t.is(Number(job.failed_items), 0);

  const byWhom = await db
    .selectFrom("bulk_job_chunks")
    .select((eb) => [eb.fn.countAll<number>().as("n"), sql<number>`SUM(applied_at >= ${joinedAt})`.as("after")])
    .where("merchant_id", "=", merchantId)
    .where("job_id", "=", jobId)
    .executeTakeFirstOrThrow();
  t.log(`chunks applied after the new workers joined: ${byWhom.after} of ${byWhom.n}`);

  // Once: one audit entry and one event per item, every product at version 2 (3 for the branded ones: the brand, then the job).
  const audit = await db
    .selectFrom("product_changes")
    .select((eb) => [eb.fn.countAll<number>().as("n"), eb.fn.count<number>("sku").distinct().as("skus")])
    .where("merchant_id", "=", merchantId)
    .where("source_ref", "=", jobId)
    .executeTakeFirstOrThrow();
  t.deepEqual([Number(audit.n), Number(audit.skus)], [ITEMS, ITEMS]);
  const events = await db
    .selectFrom("outbox_events")
    .select((eb) => eb.fn.sum<number>("event_count").as("n"))
    .where("merchant_id", "=", merchantId)
    .where("event_type", "in", ["product.updated", "product.batch"])
    .executeTakeFirstOrThrow();
  t.is(Number(events.n), ITEMS + BRANDED);
  const products = await db
    .selectFrom("products")
    .select([
      sql<number>`SUM(title LIKE 'New %' AND price_minor >= 200)`.as("repriced"),
      sql<number>`SUM(version = 2 AND brand IS NULL)`.as("plain"),
      sql<number>`SUM(version = 3 AND brand = 'Acme')`.as("branded"),
    ])
    .where("merchant_id", "=", merchantId)
    .executeTakeFirstOrThrow();
  t.deepEqual([Number(products.repriced), Number(products.plain), Number(products.branded)], [ITEMS, ITEMS - BRANDED, BRANDED]);
  t.notRegex(oldLog, /failed after every delivery|"level":"error"/, oldLog.slice(0, 2000));
});
