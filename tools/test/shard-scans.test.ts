/**
 * Background work per shard (issue 12): every process finds the shard
 * targets (shardTargets in @stockroom/common/db) and runs its cross-merchant
 * scans against each one, so no scatter query remains. A backlog of each kind
 * is built on every shard (queued-but-unpublished bulk chunks, hence unsealed
 * audit rows and unpublished outbox events once they apply; expired orders;
 * due webhook deliveries; old idempotency keys), the background workers run
 * (bulk worker with its reconciler, sealer and pruner; order sweeper; webhook
 * dispatcher; outbox relay), and the test waits until every shard is drained.
 *
 * On MariaDB (the default) there is one target, the database itself. In
 * npm test's Vitess tier (STOCKROOM_TEST_VITESS, tools/test.ts) it runs on a
 * keyspace of the pool (testDatabaseUrl; migrated here, emptied first), needs
 * merchants on at least two shards, and checks that nothing scattered: every
 * statement the workers sent through vtgate's routing names one merchant (or
 * is a lock, a transaction or the shard discovery) — the rest went to a shard
 * target — and vtgate's plan cache (/debug/query_plans on its web port,
 * STOCKROOM_TEST_VITESS_WEB or the MySQL port - 3 as vttestserver lays them
 * out) holds no Scatter route of the keyspace executed meanwhile.
 */
import { createServer, type Server } from "node:http";
import { randomBytes } from "node:crypto";
import test from "ava";
import { sql, type Kysely } from "kysely";
import {
  bulkMigrations,
  createJob,
  DEFAULT_QUEUE,
  finishStaging,
  stageLines,
  startBulkWorker,
  type BulkTables,
  type ParsedLine,
} from "@stockroom/bulk";
import { catalogMigrations, type CatalogTables } from "@stockroom/catalog";
import {
  commonMigrations,
  createDatabase,
  ensureDatabase,
  migrateToLatest,
  shardTargets,
  type CommonTables,
  type ShardTarget,
} from "@stockroom/common/db";
import { connectNats } from "@stockroom/common/nats";
import { createLogger } from "@stockroom/common/observe";
import { createMerchant } from "@stockroom/common/rpc";
import { dropTestDatabase, namesMerchant, onVitess, testDatabaseUrl, waitFor } from "@stockroom/common/testing";
import { DEFAULT_EVENT_STREAM, DEFAULT_RELAY, eventsMigrations, startOutboxRelay, type EventTables } from "@stockroom/events";
import { notifyMigrations, parseNotifyConfig, startWebhookDispatcher, type NotifyTables } from "@stockroom/notify";
import { orderMigrations, startOrderSweeper, type OrderTables } from "@stockroom/orders";

type Tables = CommonTables & EventTables & CatalogTables & NotifyTables & BulkTables & OrderTables;

const VITESS = onVitess;
const DAY = 86_400_000;
/** Statements a worker sends through vtgate's routing that name no merchant yet scatter nothing. */
const NOT_SCATTERING = [
  /^\s*select (get_lock|release_lock)\(/i, // vtgate's lock session
  /^\s*select 1\s*$/i, // the relay's check of its lock session
  /^\s*set transaction isolation level /i, // a session setting
  /^\s*set session (tx|transaction)_isolation = /i, // inTransaction's level on Vitess, and its restore
  /^\s*select @@(tx|transaction)_isolation as level\s*$/i, // the level inTransaction restores
  /^\s*select @@version as version\s*$/i, // Vitess detection
  /^\s*show vitess_shards\s*$/i,
  /^\s*select database\(\) as name\s*$/i,
];

async function planExecCounts(
  web: string | undefined,
  keyspace: string,
): Promise<Map<string, { scatter: boolean; count: number }> | undefined> {
  if (!web) return undefined;
  const response = await fetch(`${web}/debug/query_plans`).catch(() => undefined);
  if (!response?.ok) return undefined;
  const plans = (await response.json()) as Record<string, { ExecCount?: number; Instructions?: unknown }>;
  const out = new Map<string, { scatter: boolean; count: number }>();
  for (const [query, plan] of Object.entries(plans)) {
    const text = JSON.stringify(plan.Instructions ?? {});
    if (!text.includes(`"Name":"${keyspace}"`)) continue;
    out.set(query, { scatter: /"Variant":"Scatter"/.test(text), count: plan.ExecCount ?? 0 });
  }
  return out;
}

test.serial("background scans run per shard target and drain a backlog that sits on every shard", async (t) => {
  t.timeout(120_000);
  // In npm test's Vitess tier, testDatabaseUrl hands out a keyspace of the pool (2 shards).
  const url = testDatabaseUrl("shard_scans");
  const keyspace = decodeURIComponent(new URL(url).pathname.slice(1));
  await ensureDatabase(url);
  let recording = false;
  const queries: { sql: string; shard?: string }[] = [];
  const db: Kysely<Tables> = createDatabase<Tables>({
    url,
    poolSize: 8,
    observe: (text, _parameters, _ms, shard) => {
      if (recording) queries.push({ sql: text, shard });
    },
  });
  const nats = await connectNats({ servers: (process.env["NATS_URL"] ?? "127.0.0.1:4222").split(","), name: "shard-scans-test" });
  const tag = randomBytes(4).toString("hex");
  const queue = {
    ...DEFAULT_QUEUE,
    stream: `T_SHARDS_CHUNKS_${tag}`,
    subjectPrefix: `t${tag}.chunk`,
    durable: `t-${tag}`,
    reconcileAfterMs: 500,
  };
  const events = { ...DEFAULT_EVENT_STREAM, stream: `T_SHARDS_EVENTS_${tag}`, subjectPrefix: `t${tag}` };
  const receiver: Server = createServer((req, res) => req.resume().on("end", () => res.writeHead(204).end()));
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
  t.teardown(async () => {
    receiver.close();
    await nats.jsm.streams.delete(queue.stream).catch(() => {});
    await nats.jsm.streams.delete(events.stream).catch(() => {});
    await nats.close();
    await db.destroy();
    await dropTestDatabase(url);
  });

  await migrateToLatest(db, [commonMigrations, eventsMigrations, catalogMigrations, notifyMigrations, bulkMigrations, orderMigrations]);
  // The keyspace comes emptied from the pool (dropTestDatabase), so there is nothing to clear first.

  const targets = await shardTargets(db);
  if (VITESS) {
    t.true(targets.length >= 2, `the keyspace has shards: ${targets.map((s) => s.name).join(", ")}`);
    t.true(targets.every((s) => s.vitess && s.db !== db && s.name.startsWith(`${keyspace}/`)));
  } else {
    t.is(targets.length, 1, "MariaDB: one target");
    t.is(targets[0]!.db, db, "the database itself");
  }

  /** shardOf finds the target holding a merchant's row (on MariaDB the only one). */
  const shardOf = async (merchantId: string): Promise<ShardTarget<Tables>> => {
    for (const target of targets) {
      const row = await target.db.selectFrom("merchants").select("merchant_id").where("merchant_id", "=", merchantId).executeTakeFirst();
      if (row) return target;
    }
    throw new Error(`merchant ${merchantId} on no shard`);
  };
  const merchantsOn = new Map<string, string[]>(targets.map((s) => [s.name, []]));
  for (let i = 0; [...merchantsOn.values()].some((m) => m.length < 2); i++) {
    if (i > 60) throw new Error("60 merchants and still a shard without two");
    const { merchantId } = await createMerchant(db, `Shard merchant ${i}`);
    merchantsOn.get((await shardOf(merchantId)).name)!.push(merchantId);
  }
  const merchants = [...merchantsOn.values()].flat();

  // The backlog: each merchant gets one of each.
  const now = Date.now();
  for (const merchantId of merchants) {
    // A bulk job staged and queued whose chunks were never published (the reconciler tops it up).
    const { jobId } = await createJob(db, {
      merchantId,
      requestId: "",
      format: "csv",
      conflictPolicy: "overwrite",
      dryRun: false,
      fileName: "s.csv",
    });
    async function* lines(): AsyncIterable<ParsedLine> {
      for (let i = 0; i < 25; i++)
        yield { line: i + 2, kind: "valid", item: { sku: `S-${i}`, title: `T ${i}`, priceMinor: 100 + i, currency: "EUR" } };
    }
    const staged = await stageLines(db, { merchantId, jobId }, lines(), { chunkSize: 10, stagedVersions: false });
    await finishStaging(db, { merchantId, jobId }, staged, false);
    // An old idempotency key (the pruner deletes it).
    await db
      .insertInto("idempotency_keys")
      .values({
        merchant_id: merchantId,
        request_id: "old",
        method: "t",
        request_sha256: Buffer.alloc(32),
        response: null,
        created_at: new Date(now - 3 * DAY),
      })
      .execute();
    // An unpaid order past its expiry (the sweeper expires it).
    await db
      .insertInto("orders")
      .values({
        merchant_id: merchantId,
        order_id: `O${tag}`,
        state: "pending_payment",
        buyer_reference: "",
        currency: "EUR",
        total_minor: 0,
        payment_id: null,
        cancel_reason: "",
        version: 1,
        created_at: new Date(now - 60_000),
        updated_at: new Date(now - 60_000),
        expire_at: new Date(now - 1_000),
      })
      .execute();
    // A webhook endpoint with due deliveries (the dispatcher sends them).
    await db
      .insertInto("webhook_endpoints")
      .values({
        merchant_id: merchantId,
        endpoint_id: `E${tag}`,
        url: receiverUrl,
        description: "",
        event_types: JSON.stringify(["test.none"]),
        secret: "s".repeat(32),
        previous_secret: null,
        previous_secret_expires_at: null,
        consecutive_failures: 0,
        paused_until: null,
        version: 1,
        created_at: new Date(now),
        updated_at: new Date(now),
      })
      .execute();
    for (let i = 0; i < 3; i++) {
      await db
        .insertInto("webhook_deliveries")
        .values({
          merchant_id: merchantId,
          delivery_id: `D${tag}${i}`,
          endpoint_id: `E${tag}`,
          event_id: `V${tag}${i}`,
          event_type: "test.none",
          payload: "{}",
          state: "pending",
          attempts: 0,
          next_attempt_at: new Date(now - 1_000),
          expires_at: new Date(now + DAY),
          last_attempt_at: null,
          last_status: 0,
          last_error: "",
          created_at: new Date(now),
        })
        .execute();
    }
  }

  /** backlog counts, per target, what is still to do (each read on that shard only). */
  const backlog = async (target: ShardTarget<Tables>): Promise<Record<string, number>> => {
    const count = async (query: ReturnType<typeof sql<{ n: number }>>) => Number((await query.execute(target.db)).rows[0]!.n);
    return {
      unpublishedChunks: await count(sql`SELECT COUNT(*) AS n FROM bulk_job_chunks WHERE published_at IS NULL AND state = 'queued'`),
      unappliedChunks: await count(sql`SELECT COUNT(*) AS n FROM bulk_job_chunks WHERE state <> 'applied'`),
      unsealed: await count(sql`SELECT COUNT(*) AS n FROM product_changes WHERE seal_seq = 0`),
      outbox: await count(sql`SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL`),
      orders: await count(sql`SELECT COUNT(*) AS n FROM orders WHERE state = 'pending_payment'`),
      deliveries: await count(sql`SELECT COUNT(*) AS n FROM webhook_deliveries WHERE state = 'pending'`),
      keys: await count(sql`SELECT COUNT(*) AS n FROM idempotency_keys WHERE created_at < ${new Date(now - DAY)}`),
    };
  };
  const sealed = async (target: ShardTarget<Tables>) =>
    Number((await sql<{ n: number }>`SELECT COUNT(*) AS n FROM product_changes WHERE seal_seq > 0`.execute(target.db)).rows[0]!.n);
  // READ COMMITTED paths (chunk apply, sealing, webhook claims) run on Vitess too: inTransaction sets the
  // level per session there (tx_isolation on MariaDB tablets), so every backlog drains everywhere.
  const drained = (b: Record<string, number>) => Object.values(b).every((n) => n === 0);
  for (const target of targets) {
    const b = await backlog(target);
    t.true(
      b["unpublishedChunks"]! > 0 && b["orders"]! > 0 && b["deliveries"]! > 0 && b["keys"]! > 0,
      `backlog on ${target.name}: ${JSON.stringify(b)}`,
    );
  }

  /** Each background scan's finding statement, as the shard target's observer sees it. */
  const SCANS = [
    ["reconciler", /from `bulk_job_chunks`.*`published_at` is null/i],
    ["sealer", /select merchant_id, change_id from product_changes .*where seal_seq = \? and merchant_id > \?/i],
    ["order sweeper", /from `orders` where `state` = \?/i],
    ["webhook due-scan", /from `webhook_deliveries` where `state` = \? and `next_attempt_at` <= \?/i],
    ["webhook sweep", /select distinct `merchant_id`, `endpoint_id` from `webhook_deliveries`/i],
    ["relay", /from `outbox_events` where `published_at` is null/i],
    ["idempotency pruning", /delete from `idempotency_keys` where `created_at` < \?/i],
    ["job pruning", /from `bulk_jobs`/i],
  ] as const;
  const scansMissing = (target: ShardTarget<Tables>) => {
    const on = queries.filter((q) => q.shard === target.name).map((q) => q.sql.replace(/\s+/g, " "));
    return SCANS.filter(([, pattern]) => !on.some((text) => pattern.test(text))).map(([scan]) => scan);
  };

  const web = VITESS ? (process.env["STOCKROOM_TEST_VITESS_WEB"] ?? `http://127.0.0.1:${Number(new URL(url).port) - 3}`) : undefined;
  const plansBefore = await planExecCounts(web, keyspace);
  recording = true;
  const log = createLogger("shard-scans", (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent");
  const relay = await startOutboxRelay({ db, nats, events, config: { ...DEFAULT_RELAY, pollMs: 50, pruneEveryMs: 60_000 }, log });
  const worker = await startBulkWorker({
    db,
    nats,
    queue,
    log,
    concurrency: 2,
    reconcileEveryMs: 250,
    pruneEveryMs: 500,
    sealEveryMs: 300,
    seal: { lagMs: 0 },
  });
  const sweeper = startOrderSweeper({ db, log, everyMs: 200, batch: 50 });
  const notify = parseNotifyConfig({});
  const dispatcher = await startWebhookDispatcher({
    db,
    nats,
    events,
    config: { ...notify.dispatcher, durable: `t-webhooks-${tag}`, pollMs: 100, sweepEveryMs: 500 },
    allowPrivateTargets: true,
    log,
  });
  let last: Record<string, number>[] = [];
  try {
    await waitFor(
      "every shard's backlog drained",
      async () => {
        const all = await Promise.all(targets.map(backlog));
        last = all;
        if ((await Promise.all(targets.map(sealed))).some((n) => n === 0)) return undefined;
        if (VITESS && targets.some((target) => scansMissing(target).length > 0)) return undefined;
        return all.every(drained) ? true : undefined;
      },
      Number(process.env["SHARD_SCANS_WAIT_MS"] ?? 90_000),
    ).catch((error: unknown) => {
      t.log("left:", JSON.stringify(Object.fromEntries(targets.map((s, i) => [s.name, last[i]]))));
      if (VITESS) t.log("scans not seen:", JSON.stringify(Object.fromEntries(targets.map((s) => [s.name, scansMissing(s)]))));
      throw error;
    });
    t.deepEqual(relay.stats().leading, targets.map((s) => s.name).sort(), "the relay leads every shard");
  } finally {
    await Promise.all([worker.stop(), sweeper.stop(), dispatcher.stop(), relay.stop()]);
    recording = false;
  }
  for (const target of targets) {
    const b = await backlog(target);
    t.true(drained(b), `${target.name} drained: ${JSON.stringify(b)}`);
    t.true((await sealed(target)) > 0, `${target.name}: the applied chunks' changes were sealed`);
  }

  if (!VITESS) return;
  for (const target of targets) t.deepEqual(scansMissing(target), [], `every scan ran on ${target.name}`);
  const routed = queries.filter((q) => q.shard === undefined).map((q) => q.sql.replace(/\s+/g, " ").trim());
  const unnamed = [...new Set(routed.filter((s) => !namesMerchant(s) && !NOT_SCATTERING.some((p) => p.test(s))))];
  t.deepEqual(unnamed, [], "every statement through vtgate's routing names one merchant; the scans went to shard targets");
  const plansAfter = await planExecCounts(web, keyspace);
  if (!plansBefore || !plansAfter) {
    t.log(`vtgate's /debug/query_plans not reachable at ${web}: plan check skipped`);
    return;
  }
  const scattered = [...plansAfter].filter(([q, p]) => p.scatter && p.count > (plansBefore.get(q)?.count ?? 0)).map(([q]) => q);
  t.deepEqual(scattered, [], "vtgate ran no scatter route meanwhile");
});
