/**
 * `npm run bench:catalog`: UpdateProduct latency over gRPC against the same
 * transaction issued directly with mysql2 (the floor the RPC path stands on),
 * at several concurrency levels, on a fresh database that is dropped after.
 *
 * Each worker owns one product and updates its price with update_mask
 * ["price"] and the etag of its previous response, so no call should fail.
 * BENCH_CALLS sets the measured calls per level and path (default 2000).
 * Each level also reports the catalog server's CPU per call (/proc), the
 * figure that says what the RPC path costs whatever else loads the machine.
 *
 * BENCH_AGAINST=<another checkout> (with its own node_modules) runs that
 * checkout's catalog server too, on the same database and merchant, and
 * measures both servers' CPU per UpdateProduct side by side: BENCH_AB_ROUNDS
 * (5) rounds per level of BENCH_CALLS calls to each, in blocks of 250 calls
 * that alternate between the servers. This machine's speed moves by tens of percent within
 * minutes, even twofold, so two figures measured in separate runs compare
 * little; rounds taken seconds apart do.
 *
 * Where that CPU goes (BENCH_PROFILE=1, 2026-12; UpdateProduct is 6
 * statements in 2 round trips: BEGIN + SELECT … FOR UPDATE, then the UPDATE,
 * audit and outbox inserts riding with the COMMIT): Node core (HTTP/2,
 * sockets, streams) ~28% of self time, the two socket writes to MariaDB ~11%,
 * connect-es ~11%, GC ~6%, protobuf ~6%, mysql2 ~5%, Kysely ~4.5% (~9%
 * while the lock and the write were built and compiled per call; now plain
 * SQL, runStatement), DOMException ~4% (connect aborts each call's signal
 * without a reason when it ends, twice, and Node builds an error with a
 * stack for it). The service's own code is a few percent; the rest is the
 * transport and the driver, per call. Since 2026-12-04 a unary gRPC call
 * skips Node's compatibility layer and connect-es's handler (the server's
 * fast-unary.ts), which took most of the connect-es, DOMException and
 * Node-core shares: 3.04–3.48 → 1.92–2.40 ms per call at concurrency 1 and
 * 1.64–1.74 → 1.03–1.16 at 16, two rounds alternated in a slow period.
 *
 * Since 2026-12-05 a conditional UpdateProduct whose etag names the state
 * the server last saw (the bench's workers update their own product with
 * the etag of their last answer) is ONE round trip: no locking read first
 * (catalog rpc.ts updateIfCurrent). Where its CPU goes
 * at concurrency 1 (threads' /proc times over 5 s): the main thread's user
 * time about 70%, its system time (socket writes and reads, epoll) about
 * 20%, V8's GC and compiler threads about 10%; in the main thread's profile
 * Node core (HTTP/2, streams) ~33%, GC ~7%, protobuf ~8%, the mysql2 write
 * ~6%, Kysely ~5%, the interceptors ~4%. A successful response still costs
 * two socket writes: Node sends gRPC trailers in a setImmediate of their
 * own, after the HEADERS and DATA frames.
 */
import { createPool, type Pool, type ResultSetHeader, type RowDataPacket } from "mysql2/promise";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { CatalogService, type UpdateProductRequestSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { parseApiConfig, readInt, newUlid } from "@stockroom/common";
import { catalogMigrations } from "@stockroom/catalog";
import { cpuTicks, TICKS_PER_S } from "./procfs.ts";
import { startServerProcess } from "./server-process.ts";
import { createUnaryClient } from "./grpc-unary.ts";
import { median, runLoad, round, summarize, table, writeResults, type LoadResult, type Summary } from "./stats.ts";
import { besideVitess } from "./beside-vitess.ts";

// --vitess: this benchmark on MariaDB and through vtgate, side by side (beside-vitess.ts).
if (await besideVitess("catalog", import.meta.filename)) process.exit(0);

const LEVELS = (process.env["BENCH_LEVELS"] ?? "1,16,64").split(",").map(Number);
const CALLS = readInt(process.env, "BENCH_CALLS", 2000, 1, 1_000_000);
const WARMUP = 200;
/** Products per path: rpc uses rows [0, 128), raw [128, 256), so the two never share a row. */
const SLOTS = 128;
const CURRENCY = "EUR";
const TARGET_P99_MS_AT_16 = 10;
const TARGET_RATIO = 3;
/** Issue 14's: the RPC path's p99 within twice the raw transaction's at concurrency 16. */
const TARGET_RATIO_AT_16 = 2;
/** Another checkout whose catalog server is measured beside this one's (see above). */
const AGAINST = process.env["BENCH_AGAINST"] ? path.resolve(process.env["BENCH_AGAINST"]) : undefined;
const AB_ROUNDS = readInt(process.env, "BENCH_AB_ROUNDS", 5, 1, 100);
/** Calls per block within a side-by-side round: 250 at about 1 ms each is a quarter second per server. */
const AB_BLOCK = 250;
// The server runs with its default pool size; the raw pool matches it.
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

interface Level {
  concurrency: number;
  rpc: Summary & { serverCpuMsPerCall?: number };
  raw: Summary;
  rpcRawP50: number;
  rpcRawP99: number;
}

// The catalog runs as its own process (services/catalog/src/main.ts), as in
// production: the benchmark's client never shares the server's event loop.
const server = await startServerProcess({
  name: "bench_catalog",
  entrypoint: path.join(import.meta.dirname, "..", "..", "services", "catalog", "src", "main.ts"),
  migrations: [catalogMigrations],
});
const { merchantId, apiKey } = server;
// The other checkout's server: started on this one's database, which this checkout's migrations made.
const against = AGAINST
  ? await startServerProcess({
      name: "bench_catalog_against",
      entrypoint: path.join(AGAINST, "services", "catalog", "src", "main.ts"),
      cwd: AGAINST,
      migrations: [],
      shareWith: server,
    })
  : undefined;
const client = server.client(CatalogService);
/**
 * The measured calls' client (BENCH_CLIENT), as in bench:orders: "grpc"
 * (default) frames gRPC over node:http2 by hand (grpc-unary.ts), on one
 * connection; "connect", the generated connect-node client, also on one.
 * The generated client spent 0.3-0.5 ms of CPU per UpdateProduct (0.5 at
 * concurrency 1, 0.3 at 16) on the cores the server and MariaDB run on, and
 * the RPC path's latency measured it as much as the server: p50 8.2-10.1 ms
 * against 3.4-3.9 ms raw at concurrency 16 (2026-12-04).
 */
const CLIENT = process.env["BENCH_CLIENT"] === "connect" ? "connect" : "grpc";
const grpcClient = CLIENT === "grpc" ? createUnaryClient({ url: server.url, apiKey, connections: 1 }) : undefined;
type UpdateFn = (req: MessageInitShape<typeof UpdateProductRequestSchema>) => Promise<{ product?: { version: bigint; etag: string } }>;
const updateProduct: UpdateFn = (req) =>
  grpcClient ? grpcClient.call(CatalogService.method.updateProduct, req) : client.updateProduct(req);
const againstClient = against && createUnaryClient({ url: against.url, apiKey, connections: 1 });
const updateAgainst: UpdateFn | undefined = againstClient && ((req) => againstClient.call(CatalogService.method.updateProduct, req));
const pool: Pool = createPool({
  uri: server.databaseUrl,
  connectionLimit: POOL_SIZE,
  timezone: "Z",
  supportBigNumbers: true,
  charset: "utf8mb4",
  enableKeepAlive: true,
});
const actor = `api_key:${apiKey.split("_")[2]}`;

try {
  console.log(
    `catalog bench: UpdateProduct over gRPC (server in its own process; client: ${CLIENT === "connect" ? "connect-node's generated client" : "gRPC framed by hand"}) vs the raw mysql2 transaction; ${CALLS} calls per level ` +
      `(+${WARMUP} warm-up), concurrency ${LEVELS.join("/")}, DB pool ${POOL_SIZE} on both paths`,
  );
  const slots = await createProducts((against ? 3 : 2) * SLOTS);
  const rpcSlots = slots.slice(0, SLOTS);
  const rawSlots = slots.slice(SLOTS, 2 * SLOTS);
  const againstSlots = slots.slice(2 * SLOTS);
  // The raw path writes the outbox payload the RPC path produced for the same kind of product.
  const [sample] = await pool.query<RowDataPacket[]>("SELECT payload FROM outbox_events WHERE merchant_id = ? ORDER BY event_id LIMIT 1", [
    merchantId,
  ]);
  const payload = sample[0]!["payload"] as Buffer;

  const calls: Record<Path, (worker: number) => Promise<void>> = {
    rpc: (w) => rpcUpdate(rpcSlots[w]!, updateProduct),
    raw: (w) => rawUpdate(rawSlots[w]!, payload),
  };
  /** measure warms a path up, then measures it; warm-up failures count as errors too. */
  const measure = async (path: Path, concurrency: number, errors: string[]): Promise<Summary & { serverCpuMsPerCall?: number }> => {
    const { result, used } = await ticksOf(server.pid, calls[path], { warm: WARMUP, calls: CALLS, concurrency, label: path, errors });
    const summary = summarize(result);
    // The catalog server's CPU (user + system, from /proc) per measured call: what the RPC path costs on the server.
    const serverCpuMsPerCall = path === "rpc" && used !== undefined ? round((used * 1000) / TICKS_PER_S / CALLS) : undefined;
    console.log(
      `  concurrency ${concurrency} ${path}: p99 ${summary.p99Ms.toFixed(2)} ms, ${summary.throughput.toFixed(0)} calls/s` +
        (serverCpuMsPerCall === undefined ? "" : `, catalog server CPU ${serverCpuMsPerCall.toFixed(2)} ms/call`),
    );
    return { ...summary, serverCpuMsPerCall };
  };
  const errors: string[] = [];
  const levels: Level[] = [];
  for (const concurrency of LEVELS) {
    const rpc = await measure("rpc", concurrency, errors);
    const raw = await measure("raw", concurrency, errors);
    levels.push({ concurrency, rpc, raw, rpcRawP50: round(rpc.p50Ms / raw.p50Ms, 2), rpcRawP99: round(rpc.p99Ms / raw.p99Ms, 2) });
  }

  const sideBySide =
    updateAgainst && against
      ? await compareServers(calls.rpc, (w) => rpcUpdate(againstSlots[w]!, updateAgainst), against.pid, errors)
      : undefined;

  const cells = (s: Summary & { serverCpuMsPerCall?: number }) => [
    s.calls,
    s.failures,
    s.p50Ms.toFixed(2),
    s.p99Ms.toFixed(2),
    s.throughput.toFixed(0),
    s.cpuMsPerCall.toFixed(2),
    s.serverCpuMsPerCall?.toFixed(2) ?? "",
  ];
  const rows = levels.flatMap((l) => [
    [l.concurrency, "rpc", ...cells(l.rpc), l.rpcRawP50.toFixed(2), l.rpcRawP99.toFixed(2)],
    ["", "raw", ...cells(l.raw)],
  ]);
  const header = [
    "concurrency",
    "path",
    "calls",
    "failures",
    "p50 ms",
    "p99 ms",
    "calls/s",
    "client cpu ms/call",
    "server cpu ms/call",
    "rpc/raw p50",
    "rpc/raw p99",
  ];
  console.log(`\n${table(header, rows)}`);

  const at16 = levels.find((l) => l.concurrency === 16);
  const targets = [
    ...(at16
      ? [
          {
            target: `rpc p99 <= ${TARGET_P99_MS_AT_16} ms at concurrency 16`,
            actual: `${at16.rpc.p99Ms.toFixed(2)} ms`,
            pass: at16.rpc.p99Ms <= TARGET_P99_MS_AT_16,
          },
          {
            target: `rpc p99 <= ${TARGET_RATIO_AT_16}x raw p99 at concurrency 16 (issue 14)`,
            actual: `${at16.rpcRawP99.toFixed(2)}x`,
            pass: at16.rpc.p99Ms <= TARGET_RATIO_AT_16 * at16.raw.p99Ms,
          },
        ]
      : []),
    ...levels.map((l) => ({
      target: `rpc p99 <= ${TARGET_RATIO}x raw p99 at concurrency ${l.concurrency}`,
      actual: `${l.rpcRawP99.toFixed(2)}x`,
      pass: l.rpc.p99Ms <= TARGET_RATIO * l.raw.p99Ms,
    })),
  ];
  console.log(
    `\n${table(
      ["target", "actual", "result"],
      targets.map((t) => [t.target, t.actual, t.pass ? "PASS" : "MISS"]),
    )}`,
  );

  if (sideBySide) {
    console.log(
      `\nserver CPU per UpdateProduct, this checkout against ${AGAINST} (${sideBySide.against}), ${AB_ROUNDS} alternated rounds of ${CALLS} calls each (blocks of ${AB_BLOCK}):\n` +
        table(
          ["concurrency", "this ms/call (median)", "against ms/call (median)", "ratio (median)", "ratio per round"],
          sideBySide.levels.map((l) => [
            l.concurrency,
            l.thisMs.toFixed(3),
            l.againstMs.toFixed(3),
            `${l.ratio.toFixed(2)}x`,
            l.rounds.map((r) => r.ratio.toFixed(2)).join(" "),
          ]),
        ),
    );
  }

  const file = writeResults("catalog", {
    client: CLIENT,
    ...(sideBySide && { sideBySide }),
    callsPerLevel: CALLS,
    warmupPerLevel: WARMUP,
    dbPoolSize: POOL_SIZE,
    levels,
    targets,
    errors,
  });
  console.log(`\nwrote ${file}`);

  if (errors.length > 0) {
    const failures = levels.reduce((n, l) => n + l.rpc.failures + l.raw.failures, 0);
    console.error(`\n${failures} measured calls failed (warm-up failures are listed too), e.g.:\n  ${errors.slice(0, 5).join("\n  ")}`);
    process.exitCode = 1;
  }
} catch (error) {
  console.error("catalog bench failed:", error);
  process.exitCode = 1;
} finally {
  grpcClient?.close();
  againstClient?.close();
  await pool.end();
  await against?.stop();
  await server.stop();
}

/**
 * ticksOf warms a call up, then runs it and returns the load and the CPU
 * ticks process pid used meanwhile (undefined without /proc); failures of
 * both go to errors, labelled.
 */
async function ticksOf(
  pid: number,
  call: (w: number) => Promise<void>,
  o: { warm: number; calls: number; concurrency: number; label: string; errors: string[] },
): Promise<{ result: LoadResult; used: number | undefined }> {
  const warm = await runLoad({ calls: o.warm, concurrency: o.concurrency, call });
  const ticks = cpuTicks(pid);
  const result = await runLoad({ calls: o.calls, concurrency: o.concurrency, call });
  const after = cpuTicks(pid);
  o.errors.push(...[...warm.errors, ...result.errors].map((e) => `${o.label} at concurrency ${o.concurrency}: ${e}`));
  return { result, used: ticks === undefined || after === undefined ? undefined : after - ticks };
}

/**
 * compareServers measures this checkout's server and the BENCH_AGAINST one
 * at each level, AB_ROUNDS times, alternating which goes first: each
 * round's ratio compares blocks of calls taken a fraction of a second apart.
 */
async function compareServers(
  mine: (w: number) => Promise<void>,
  theirs: (w: number) => Promise<void>,
  againstPid: number,
  errors: string[],
) {
  /** block runs calls on one server and returns the CPU ticks it took (after a short warm-up of its own). */
  const block = async (pid: number, call: (w: number) => Promise<void>, calls: number, concurrency: number, label: string) =>
    (await ticksOf(pid, call, { warm: Math.min(20, calls), calls, concurrency, label, errors })).used ?? 0;
  /** A round's calls go in blocks of AB_BLOCK per server, alternating, so both see the machine as it is within seconds. */
  const cpuPerCall = async (concurrency: number, thisFirst: boolean) => {
    let mineTicks = 0;
    let theirTicks = 0;
    for (let done = 0; done < CALLS; done += AB_BLOCK) {
      const calls = Math.min(AB_BLOCK, CALLS - done);
      if (thisFirst) mineTicks += await block(server.pid, mine, calls, concurrency, "this");
      theirTicks += await block(againstPid, theirs, calls, concurrency, "against");
      if (!thisFirst) mineTicks += await block(server.pid, mine, calls, concurrency, "this");
    }
    const ms = (ticks: number) => (ticks * 1000) / TICKS_PER_S / CALLS;
    return { thisMs: ms(mineTicks), againstMs: ms(theirTicks) };
  };
  // The other server has only served its slots' creation: both JITs warm alike before the first round.
  await runLoad({ calls: CALLS, concurrency: LEVELS[0]!, call: theirs });
  const levels = [];
  for (const concurrency of LEVELS) {
    const rounds: { thisMs: number; againstMs: number; ratio: number }[] = [];
    for (let r = 0; r < AB_ROUNDS; r++) {
      const { thisMs, againstMs } = await cpuPerCall(concurrency, r % 2 === 0);
      rounds.push({ thisMs: round(thisMs, 3), againstMs: round(againstMs, 3), ratio: round(thisMs / againstMs, 3) });
      console.log(
        `  side by side, concurrency ${concurrency}, round ${r + 1}: ${thisMs.toFixed(3)} against ${againstMs.toFixed(3)} ms/call`,
      );
    }
    levels.push({
      concurrency,
      thisMs: round(median(rounds.map((x) => x.thisMs)), 3),
      againstMs: round(median(rounds.map((x) => x.againstMs)), 3),
      ratio: round(median(rounds.map((x) => x.ratio)), 3),
      rounds,
    });
  }
  const head = spawnSync("git", ["-C", AGAINST!, "log", "-1", "--format=%h"], { encoding: "utf8" }).stdout.trim();
  return { against: head || "not a git checkout", rounds: AB_ROUNDS, callsPerRound: CALLS, levels };
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
async function rpcUpdate(slot: Slot, update: UpdateFn): Promise<void> {
  const priceMinor = slot.priceMinor + 1;
  try {
    const { product } = await update({
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
    const [rows] = await conn.query<RowDataPacket[]>("SELECT * FROM products WHERE merchant_id = ? AND sku = ? FOR UPDATE", [
      merchantId,
      slot.sku,
    ]);
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
      [
        merchantId,
        changeId,
        slot.id,
        slot.sku,
        version,
        '["price"]',
        snapshot(row),
        snapshot({ ...row, price_minor: priceMinor, version, updated_at: now }),
        actor,
        now,
      ],
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
  const [rows] = await pool.query<RowDataPacket[]>("SELECT version, price_minor FROM products WHERE merchant_id = ? AND sku = ?", [
    merchantId,
    slot.sku,
  ]);
  const row = rows[0];
  if (!row) return;
  const version = Number(row["version"]);
  Object.assign(slot, { version, etag: `${slot.id}.${version}`, priceMinor: Number(row["price_minor"]) });
}
