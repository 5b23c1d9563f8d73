/**
 * `npm run bench:catalog`: UpdateProduct latency over gRPC against the same
 * transaction issued directly with mysql2 (the floor the RPC path stands on),
 * at several concurrency levels, on a fresh database that is dropped after.
 *
 * Each worker owns one product and updates its price with update_mask
 * ["price"] and the etag of its previous response, so no call should fail.
 * BENCH_CALLS sets the measured calls per level and path (default 2000).
 */
import { createPool, type Pool, type ResultSetHeader, type RowDataPacket } from "mysql2/promise";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { parseApiConfig, readInt } from "@stockroom/common/config.ts";
import { startTestApi } from "@stockroom/common/testing.ts";
import { newUlid } from "@stockroom/common/ulid.ts";
import { catalogModule } from "@stockroom/catalog/module.ts";
import { runLoad, round, summarize, table, writeResults, type Summary } from "./stats.ts";

const LEVELS = [1, 16, 64];
const CALLS = readInt(process.env, "BENCH_CALLS", 2000, 1, 1_000_000);
const WARMUP = 200;
/** Products per path: rpc uses rows [0, 128), raw [128, 256), so the two never share a row. */
const SLOTS = 128;
const CURRENCY = "EUR";
const TARGET_P99_MS_AT_16 = 10;
const TARGET_RATIO = 3;
// startTestApi configures the server with parseApiConfig({}), so the raw pool matches its default.
const POOL_SIZE = parseApiConfig({}).dbPoolSize;

/** What a worker knows about its product between calls. */
interface Slot {
  sku: string;
  id: string;
  version: number;
  etag: string;
  priceMinor: number;
}

type Path = "rpc" | "raw";

const testApi = await startTestApi("bench_catalog", (db) => [catalogModule(db)]);
const { merchantId, apiKey } = testApi.merchantA;
const client = testApi.client(CatalogService, testApi.merchantA, "grpc");
const pool: Pool = createPool({
  uri: testApi.databaseUrl,
  connectionLimit: POOL_SIZE,
  timezone: "Z",
  supportBigNumbers: true,
  charset: "utf8mb4",
  enableKeepAlive: true,
});
const actor = `api_key:${apiKey.split("_")[2]}`;

try {
  console.log(
    `catalog bench: UpdateProduct over gRPC vs raw mysql2 transaction; ${CALLS} calls per level ` +
      `(+${WARMUP} warm-up), concurrency ${LEVELS.join("/")}, DB pool ${POOL_SIZE} on both paths`,
  );
  const slots = await createProducts(2 * SLOTS);
  const rpcSlots = slots.slice(0, SLOTS);
  const rawSlots = slots.slice(SLOTS);
  // The raw path writes the outbox payload the RPC path produced for the same kind of product.
  const [sample] = await pool.query<RowDataPacket[]>(
    "SELECT payload FROM outbox_events WHERE merchant_id = ? ORDER BY event_id LIMIT 1",
    [merchantId],
  );
  const payload = sample[0]!["payload"] as Buffer;

  const calls: Record<Path, (worker: number) => Promise<void>> = {
    rpc: (w) => rpcUpdate(rpcSlots[w]!),
    raw: (w) => rawUpdate(rawSlots[w]!, payload),
  };
  const levels: { concurrency: number; rpc: Summary; raw: Summary; errors: string[] }[] = [];
  for (const concurrency of LEVELS) {
    const level = { concurrency, errors: [] as string[] } as (typeof levels)[number];
    for (const path of ["rpc", "raw"] as const) {
      testApi.queries.length = 0; // the harness records every statement; keep it from growing
      const warm = await runLoad({ calls: WARMUP, concurrency, call: calls[path] });
      const result = await runLoad({ calls: CALLS, concurrency, call: calls[path] });
      level[path] = { ...summarize(result), failures: result.failures + warm.failures };
      level.errors.push(...[...warm.errors, ...result.errors].map((e) => `${path}: ${e}`));
      console.log(`  concurrency ${concurrency} ${path}: p99 ${level[path].p99Ms} ms, ${level[path].throughput} calls/s`);
    }
    levels.push(level);
  }

  const rows = levels.flatMap(({ concurrency, rpc, raw }) => [
    [concurrency, "rpc", rpc.calls, rpc.failures, rpc.p50Ms.toFixed(2), rpc.p99Ms.toFixed(2), rpc.throughput.toFixed(0), ratio(rpc.p50Ms, raw.p50Ms), ratio(rpc.p99Ms, raw.p99Ms)],
    ["", "raw", raw.calls, raw.failures, raw.p50Ms.toFixed(2), raw.p99Ms.toFixed(2), raw.throughput.toFixed(0), "", ""],
  ]);
  console.log("\n" + table(["concurrency", "path", "calls", "failures", "p50 ms", "p99 ms", "calls/s", "rpc/raw p50", "rpc/raw p99"], rows));

  const at16 = levels.find((l) => l.concurrency === 16)!;
  const targets = [
    { target: `rpc p99 <= ${TARGET_P99_MS_AT_16} ms at concurrency 16`, actual: `${at16.rpc.p99Ms.toFixed(2)} ms`, pass: at16.rpc.p99Ms <= TARGET_P99_MS_AT_16 },
    ...levels.map(({ concurrency, rpc, raw }) => ({
      target: `rpc p99 <= ${TARGET_RATIO}x raw p99 at concurrency ${concurrency}`,
      actual: `${ratio(rpc.p99Ms, raw.p99Ms)}x`,
      pass: rpc.p99Ms <= TARGET_RATIO * raw.p99Ms,
    })),
  ];
  console.log("\n" + table(["target", "actual", "result"], targets.map((t) => [t.target, t.actual, t.pass ? "PASS" : "MISS"])));

  const file = writeResults("catalog", {
    callsPerLevel: CALLS,
    warmupPerLevel: WARMUP,
    dbPoolSize: POOL_SIZE,
    levels: levels.map((l) => ({ ...l, rpcRawP50: round(l.rpc.p50Ms / l.raw.p50Ms), rpcRawP99: round(l.rpc.p99Ms / l.raw.p99Ms) })),
    targets,
  });
  console.log(`\nwrote ${file}`);

  const failures = levels.reduce((n, l) => n + l.rpc.failures + l.raw.failures, 0);
  if (failures > 0) {
    console.error(`\n${failures} calls failed, e.g.:\n  ${levels.flatMap((l) => l.errors).slice(0, 5).join("\n  ")}`);
    process.exitCode = 1;
  }
} catch (error) {
  console.error("catalog bench failed:", error);
  process.exitCode = 1;
} finally {
  await pool.end();
  await testApi.close();
}

function ratio(a: number, b: number): string {
  return (a / b).toFixed(2);
}

/** createProducts creates n products for merchant A over the API and returns their slots. */
async function createProducts(n: number): Promise<Slot[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const sku = `BENCH-${String(i).padStart(4, "0")}`;
      const { product } = await client.createProduct({
        product: {
          sku,
          title: `Benchmark product ${i}`,
          description: "A product that exists to have its price changed, over and over, as fast as possible.",
          price: { currencyCode: CURRENCY, minorUnits: 1000n },
          stock: 100,
          attributes: { color: "red", size: "M" },
        },
      });
      return { sku, id: product!.id, version: Number(product!.version), etag: product!.etag, priceMinor: 1000 };
    }),
  );
}

/** rpcUpdate changes the slot's price through UpdateProduct with the etag of its last response. */
async function rpcUpdate(slot: Slot): Promise<void> {
  const priceMinor = slot.priceMinor + 1;
  try {
    const { product } = await client.updateProduct({
      product: { sku: slot.sku, etag: slot.etag, price: { currencyCode: CURRENCY, minorUnits: BigInt(priceMinor) } },
      updateMask: { paths: ["price"] },
    });
    if (!product || Number(product.version) !== slot.version + 1) {
      throw new Error(`${slot.sku}: expected version ${slot.version + 1}, got ${product?.version}`);
    }
    Object.assign(slot, { version: Number(product.version), etag: product.etag, priceMinor });
  } catch (error) {
    await resync(slot);
    throw error;
  }
}

/**
 * rawUpdate runs, with mysql2 alone, the statements UpdateProduct runs: lock
 * the row, bump it at the expected version, append the audit entry and the
 * outbox event, in one transaction.
 */
async function rawUpdate(slot: Slot, payload: Buffer): Promise<void> {
  const conn = await pool.getConnection();
  try {
    await conn.query("BEGIN");
    const [rows] = await conn.query<RowDataPacket[]>(
      "SELECT * FROM products WHERE merchant_id = ? AND sku = ? FOR UPDATE",
      [merchantId, slot.sku],
    );
    const row = rows[0];
    if (!row || Number(row["version"]) !== slot.version) throw new Error(`${slot.sku}: not at version ${slot.version}`);
    const now = new Date();
    const priceMinor = slot.priceMinor + 1;
    const version = slot.version + 1;
    const [updated] = await conn.query<ResultSetHeader>(
      "UPDATE products SET price_minor = ?, version = version + 1, updated_at = ? WHERE merchant_id = ? AND sku = ? AND version = ?",
      [priceMinor, now, merchantId, slot.sku, slot.version],
    );
    if (updated.affectedRows !== 1) throw new Error(`${slot.sku}: row changed under its lock`);
    const changeId = newUlid(now.getTime());
    await conn.query(
      `INSERT INTO product_changes (merchant_id, change_id, product_id, sku, change_type, version, changed_fields,
         before_state, after_state, actor, source_kind, source_ref, request_id, reason, created_at)
       VALUES (?, ?, ?, ?, 'updated', ?, ?, ?, ?, ?, 'api', '', '', '', ?)`,
      [merchantId, changeId, slot.id, slot.sku, version, '["price"]', snapshot(row), snapshot({ ...row, price_minor: priceMinor, version, updated_at: now }), actor, now],
    );
    await conn.query(
      `INSERT INTO outbox_events (merchant_id, event_id, aggregate_type, aggregate_id, aggregate_version, event_type,
         payload, trace_context, created_at)
       VALUES (?, ?, 'product', ?, ?, 'product.updated', ?, NULL, ?)`,
      [merchantId, changeId, slot.id, version, payload, now],
    );
    await conn.query("COMMIT");
    Object.assign(slot, { version, priceMinor });
  } catch (error) {
    await conn.query("ROLLBACK").catch(() => {});
    await resync(slot);
    throw error;
  } finally {
    conn.release();
  }
}

/** snapshot is the audit trail's JSON of a products row, shaped like the service's. */
function snapshot(row: RowDataPacket): string {
  return JSON.stringify({
    id: row["product_id"],
    sku: row["sku"],
    title: row["title"],
    description: row["description"],
    priceMinor: Number(row["price_minor"]),
    currency: row["currency"],
    stock: row["stock"],
    status: row["status"],
    attributes: row["attributes"],
    version: Number(row["version"]),
    createdAt: row["created_at"],
    updatedAt: row["updated_at"],
  });
}

/** resync reloads a slot after a failed call, so one failure does not fail all the worker's later calls. */
async function resync(slot: Slot): Promise<void> {
  const [rows] = await pool.query<RowDataPacket[]>(
    "SELECT version, price_minor FROM products WHERE merchant_id = ? AND sku = ?",
    [merchantId, slot.sku],
  );
  const row = rows[0];
  if (!row) return;
  const version = Number(row["version"]);
  Object.assign(slot, { version, etag: `${slot.id}.${version}`, priceMinor: Number(row["price_minor"]) });
}
