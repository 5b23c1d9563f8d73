/**
 * `npm run bench:orders`: CreateOrder at concurrency BENCH_BUYERS (default
 * 64) in two scenarios, each through the RPC path and the raw baseline in
 * the same run:
 *
 * - hot: every order takes 1 or 2 units of ONE SKU (stocked for all of
 *   them), so every order transaction queues on the same row lock;
 * - spread: 10,000 SKUs (BENCH_SPREAD_SKUS), each order picks one at random.
 *
 * RPC: CreateOrder over gRPC to the orders process (services/orders/src/
 * main.ts) running on its own, as in production. Raw: the same order
 * transaction issued directly with mysql2 on a pool the size of the
 * server's (the conditional stock decrement, then INSERT order and line;
 * no idempotency row, audit trail or outbox). Each path has its own SKUs.
 * A second merchant's light traffic (2 buyers, one order each per 20 ms, on
 * its own SKUs, from a client process of its own: light-buyers.ts) runs
 * first on the idle server (BENCH_LIGHT_IDLE_MS, default 10 s: its p99 is
 * the ratio's denominator) and then alongside the hot RPC phase; the ratio
 * of its two p99s is what the hot merchant costs a bystander. It also runs
 * alongside the hot raw phase: the same load on MariaDB, with the orders
 * server idle, so the two tell the orders server's share of the bystander's
 * slowdown from the database's.
 *
 * - sellout (issue 14's held-out case): BENCH_SELLOUT_ORDERS (1,000)
 *   single-unit orders at once on one SKU stocked BENCH_SELLOUT_STOCK
 *   (137), then as many again on the SKU, now sold out; BENCH_SELLOUT_ROUNDS
 *   (5) times on a fresh SKU each, through each path. Exactly the stock
 *   must be placed and the rest refused INSUFFICIENT_STOCK. In the first
 *   wave the refused calls are the later arrivals of the burst, answered
 *   once the stock is gone. The second wave runs while another
 *   transaction holds the SKU's row lock (BENCH_SELLOUT_LOCK_MS, 1 s): the
 *   process knows the SKU is sold out and answers from a non-locking read
 *   (reservations.ts), where every raw transaction queues for a
 *   connection and the row lock to find out.
 *
 * Targets (the issues'): spread p99 <= 20 ms and spread orders/s >= 0.5x
 * raw; hot orders/s >= 1.5x raw hot (the orders of one SKU share
 * transactions, services/orders/src/reservations.ts); the light merchant's
 * p99 alongside the hot phase <= 2x its p99 on the idle server (the
 * per-merchant bulkhead, services/orders/src/bulkhead.ts); on a SKU known
 * to be sold out, every order refused before the row lock held elsewhere
 * is released (sellout). Every scenario
 * ends with an oversell check: each SKU's stock decrease must equal the
 * quantity in its committed order lines and the quantity of the orders the
 * clients saw succeed.
 *
 * BENCH_CALLS measured orders per scenario and path (default 2000, after
 * BENCH_WARMUP = 200 warm-up; the hot phases, which the light merchant runs
 * beside, go on for BENCH_LIGHT_IDLE_MS at least), BENCH_RATE the server's ORDER_RATE_PER_SEC
 * and burst (default 0: unlimited, so the database path is measured). The
 * server keeps its default bulkhead (ORDER_IN_FLIGHT_PER_MERCHANT); a shed
 * buyer waits out RetryInfo and retries, and its wait counts in its call's
 * latency. Writes
 * bench-results/orders.json. Exits non-zero on a failed call or an
 * oversell, never on a missed target. BENCH_PROFILE=1 profiles the orders
 * server and prints where its CPU went (server-process.ts). BENCH_CLIENT
 * picks the buyers' client: gRPC framed by hand (default, grpc-unary.ts) or
 * "connect", the generated client, which costs the shared cores about as
 * much CPU per order as the server does.
 */
import { fork, type ChildProcess } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createPool, type Pool, type PoolConnection, type ResultSetHeader, type RowDataPacket } from "mysql2/promise";
import { ErrorInfoSchema, RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { type CreateOrderRequestSchema, OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { createMerchant } from "@stockroom/common/rpc";
import { parseApiConfig, readInt, newUlid } from "@stockroom/common";
import { createDatabase, type CommonTables } from "@stockroom/common/db";
import { freePort } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { orderMigrations } from "@stockroom/orders";
import { cpuTicks, findProcesses, TICKS_PER_S } from "./procfs.ts";
import { startServerProcess } from "./server-process.ts";
import { describeGc, describeLoop, readRuntime, runtimePhase, type RuntimePhase } from "./runtime-metrics.ts";
import { createUnaryClient } from "./grpc-unary.ts";
import { round, runLoad, summarize, table, writeResults, type LoadResult, type Summary } from "./stats.ts";
import { besideVitess } from "./beside-vitess.ts";
import type { LightResult } from "./light-buyers.ts";

// --vitess: this benchmark on MariaDB and through vtgate, side by side (beside-vitess.ts).
if (await besideVitess("orders", import.meta.filename)) process.exit(0);

const BUYERS = readInt(process.env, "BENCH_BUYERS", 64, 1, 1024);
const CALLS = readInt(process.env, "BENCH_CALLS", 2000, 1, 1_000_000);
const WARMUP = readInt(process.env, "BENCH_WARMUP", 200, 0, 1_000_000);
const RATE = readInt(process.env, "BENCH_RATE", 0, 0, 1_000_000);
/** BENCH_SCENARIOS: a comma-separated subset of hot,spread,sellout (dev runs); targets of scenarios left out are not reported. */
const SCENARIO_LIST = (process.env["BENCH_SCENARIOS"] ?? "hot,spread,sellout").split(",").map((s) => s.trim());
const SCENARIOS = SCENARIO_LIST.filter((s): s is Scenario => s === "hot" || s === "spread");
const SELLOUT = SCENARIO_LIST.includes("sellout");
const SELLOUT_ORDERS = readInt(process.env, "BENCH_SELLOUT_ORDERS", 1000, 1, 100_000);
const SELLOUT_STOCK = readInt(process.env, "BENCH_SELLOUT_STOCK", 137, 1, 1_000_000);
const SELLOUT_ROUNDS = readInt(process.env, "BENCH_SELLOUT_ROUNDS", 5, 1, 100);
/** How long another transaction holds the sold-out SKU's row lock while the second wave runs. */
const SELLOUT_LOCK_MS = readInt(process.env, "BENCH_SELLOUT_LOCK_MS", 1000, 1, 60_000);
/** The sellout's calls refused for load (RESOURCE_EXHAUSTED), each retried after its RetryInfo. */
let selloutShed = 0;
const SPREAD_SKUS = readInt(process.env, "BENCH_SPREAD_SKUS", 10_000, 1, 1_000_000);
const LIGHT_SKUS = 5;
/** Enough that no SKU runs out, even the hot one: at most 2 units per order. */
/** Every seeded SKU's stock: more than any run sells (a hot phase runs at least LIGHT_IDLE_MS, whatever BENCH_CALLS says). */
const STOCK = 1_000_000_000;
const LIGHT_BUYERS = 2;
const LIGHT_PACE_MS = 20;
const LIGHT_IDLE_MS = readInt(process.env, "BENCH_LIGHT_IDLE_MS", 10_000, 500, 600_000);
/** Unmeasured light traffic before the idle baseline. */
const LIGHT_WARMUP_MS = 3000;
const TARGET_SPREAD_P99_MS = 20;
const TARGET_THROUGHPUT_RATIO = 0.5;
const TARGET_HOT_RATIO = 1.5;
const TARGET_LIGHT_P99_RATIO = 2;
// The server runs with its default pool size; the raw pool matches it.
const POOL_SIZE = parseApiConfig({}).dbPoolSize;

type Line = { sku: string; quantity: number };
type Scenario = "hot" | "spread";
type Via = "rpc" | "raw";

/** The orders server's own /metrics: its GC pauses and event-loop delay while the light merchant is measured (runtime-metrics.ts). */
const metricsPort = await freePort();
const server = await startServerProcess({
  name: "bench_orders",
  entrypoint: path.join(import.meta.dirname, "..", "..", "services", "orders", "src", "main.ts"),
  migrations: [catalogMigrations, orderMigrations],
  env: { ORDER_RATE_PER_SEC: String(RATE), ORDER_RATE_BURST: String(Math.max(1, RATE)), METRICS_PORT: String(metricsPort) },
});
const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
/**
 * serverRuntime runs a phase and says what the orders server's runtime did
 * meanwhile: a bystander's call waits out every collection pause and
 * event-loop stall of the process, whoever caused them.
 */
async function serverRuntime<T>(run: () => Promise<T>): Promise<[T, RuntimePhase | undefined]> {
  const before = await readRuntime(metricsUrl);
  const result = await run();
  const after = await readRuntime(metricsUrl);
  return [result, before && after ? runtimePhase(before, after) : undefined];
}
/**
 * BENCH_LIGHT_OWN_PROCESS=1 (a diagnostic): the light merchant calls an orders process of its own on the
 * same database, so its slowdown beside the hot phase is the database's alone, the hot process's left out.
 */
const lightServer =
  process.env["BENCH_LIGHT_OWN_PROCESS"] === "1"
    ? await startServerProcess({
        name: "bench_orders_light",
        entrypoint: path.join(import.meta.dirname, "..", "..", "services", "orders", "src", "main.ts"),
        migrations: [],
        env: { ORDER_RATE_PER_SEC: String(RATE), ORDER_RATE_BURST: String(Math.max(1, RATE)) },
        shareWith: server,
      })
    : undefined;
const pool: Pool = createPool({
  uri: server.databaseUrl,
  connectionLimit: POOL_SIZE,
  timezone: "Z",
  supportBigNumbers: true,
  charset: "utf8mb4",
  enableKeepAlive: true,
});
const merchantId = server.merchantId;
/**
 * The buyers' client (BENCH_CLIENT): "grpc" (default) frames gRPC over node:http2 by hand (grpc-unary.ts), on one
 * connection; "connect", the generated connect-node client, also on one. The generated client costs about 0.8 ms
 * of CPU per order on the cores the server runs on, and the closed loop's cycle waits on it as on the server.
 */
const CLIENT = process.env["BENCH_CLIENT"] === "connect" ? "connect" : "grpc";
const connectClient = server.client(OrderService);
const grpcClient = createUnaryClient({ url: server.url, apiKey: server.apiKey, connections: 1 });
const createOrder = (req: MessageInitShape<typeof CreateOrderRequestSchema>) =>
  CLIENT === "connect" ? connectClient.createOrder(req) : grpcClient.call(OrderService.method.createOrder, req);
const mariadb = findProcesses({ mariadbd: "mariadb", mysqld: "mariadb" })[0]?.pid;

/** cpuPerOrder measures the orders server's and MariaDB's CPU (ms per order) over one phase. */
async function cpuPerOrder<T extends { calls: number }>(
  run: () => Promise<T>,
): Promise<T & { serverCpuMsPerOrder?: number; mariadbCpuMsPerOrder?: number }> {
  const before = [cpuTicks(server.pid), mariadb === undefined ? undefined : cpuTicks(mariadb)];
  const result = await run();
  const after = [cpuTicks(server.pid), mariadb === undefined ? undefined : cpuTicks(mariadb)];
  const perOrder = (i: number) =>
    before[i] === undefined || after[i] === undefined
      ? undefined
      : round(((after[i]! - before[i]!) * 1000) / TICKS_PER_S / result.calls, 3);
  return { ...result, serverCpuMsPerOrder: perOrder(0), mariadbCpuMsPerOrder: perOrder(1) };
}

let light: LightMerchant | undefined;
try {
  light = await lightMerchant();
  const skus: Record<Scenario, Record<Via, string[]>> = {
    hot: { rpc: await seed(merchantId, "HOT-RPC-", 1), raw: await seed(merchantId, "HOT-RAW-", 1) },
    spread: { rpc: await seed(merchantId, "SPREAD-RPC-", SPREAD_SKUS), raw: await seed(merchantId, "SPREAD-RAW-", SPREAD_SKUS) },
  };
  // The light merchant alone first: its p99 on an idle server is the bystander's baseline. The same traffic
  // warms the server first, unmeasured: a cold process's first calls (JIT, pool connections) would inflate
  // the baseline and flatter the ratio.
  const stopWarm = startLightTraffic(light);
  await delay(LIGHT_WARMUP_MS);
  await stopWarm();
  const [idleResult, idleRuntime] = await serverRuntime(async () => {
    const stopIdle = startLightTraffic(light!);
    await delay(LIGHT_IDLE_MS);
    return stopIdle();
  });
  const lightIdle = summarize(idleResult);
  /** lightRatio is the light merchant's p99 over its p99 on the idle server. */
  const lightRatio = (s: Summary) => round(s.p99Ms / lightIdle.p99Ms, 2);
  console.log(
    `orders bench: CreateOrder over gRPC (orders process on its own) vs the same order transaction in mysql2; ` +
      `${BUYERS} buyers (${CLIENT === "connect" ? "connect-node's generated client" : "gRPC framed by hand"}, one connection); hot = 1 SKU, spread = ${SPREAD_SKUS} SKUs (one random SKU per order, 1-2 units); ` +
      `${CALLS} orders per scenario and path (+${WARMUP} warm-up; hot phases ${LIGHT_IDLE_MS} ms at least); ${LIGHT_BUYERS} light buyers of another merchant alongside the hot rpc phase; ` +
      `DB pool ${POOL_SIZE}; rate limit ${RATE || "off"}`,
  );
  console.log(`  light merchant alone (idle server, ${LIGHT_IDLE_MS} ms): p50 ${lightIdle.p50Ms} ms, p99 ${lightIdle.p99Ms} ms`);

  let shed = 0;
  let request = 0;
  /** rpcOrder places one order (placeOrder: a shed call is retried after its RetryInfo). */
  const rpcOrder = (lines: Line[]) => placeOrder({ requestId: `bench-${++request}`, lines, buyerReference: "black-friday" }, () => shed++);

  const errors: string[] = [];
  const note = (label: string, result: LoadResult) => errors.push(...result.errors.map((e) => `${label}: ${e}`));
  note("light merchant alone", idleResult);
  const results = {} as Record<Scenario, Record<Via, Summary & { serverCpuMsPerOrder?: number; mariadbCpuMsPerOrder?: number }>>;
  const checks = {} as Record<Scenario, Record<Via, StockCheck>>;
  let bystander: Summary | undefined;
  /** The orders server's runtime during the hot rpc phase, beside the light merchant. */
  let hotRuntime: RuntimePhase | undefined;
  /** The light merchant alongside the hot raw phase (the orders server idle). */
  let besideRaw: Summary | undefined;
  for (const scenario of SCENARIOS) {
    results[scenario] = {} as Record<Via, Summary>;
    checks[scenario] = {} as Record<Via, StockCheck>;
    for (const via of ["rpc", "raw"] as const) {
      const pick = skus[scenario][via];
      const sold = new Map<string, number>();
      const call = async () => {
        const lines = basket(pick);
        await (via === "rpc" ? rpcOrder(lines) : rawOrder(merchantId, lines));
        for (const l of lines) sold.set(l.sku, (sold.get(l.sku) ?? 0) + l.quantity);
      };
      const label = `${scenario} ${via}`;
      if (WARMUP > 0) note(`${label} warm-up`, await runLoad({ calls: WARMUP, concurrency: BUYERS, call }));
      const stopLight = scenario === "hot" ? startLightTraffic(light) : undefined;
      const shedBefore = shed;
      // Beside the light merchant the phase lasts at least as long as its idle baseline did, so both its p99s
      // come from about as many calls (2,000 hot orders took about a second: 46 light calls, a p99 that was their maximum).
      const [result, runtime] = await serverRuntime(() =>
        cpuPerOrder(async () => {
          const r = await runLoad({ calls: CALLS, concurrency: BUYERS, call, minMs: stopLight ? LIGHT_IDLE_MS : 0 });
          return { ...r, calls: r.latencies.length + r.failures };
        }),
      );
      if (stopLight && via === "rpc") hotRuntime = runtime;
      note(label, result);
      const summary = {
        ...summarize(result),
        serverCpuMsPerOrder: via === "rpc" ? result.serverCpuMsPerOrder : undefined,
        mariadbCpuMsPerOrder: result.mariadbCpuMsPerOrder,
      };
      results[scenario][via] = summary;
      let extra = via === "rpc" ? `; ${shed - shedBefore} calls shed and retried` : "";
      if (stopLight) {
        const lightResult = await stopLight();
        note(`light merchant beside ${via}`, lightResult);
        const seen = summarize(lightResult);
        if (via === "rpc") bystander = seen;
        else besideRaw = seen;
        extra += `; light merchant p50 ${seen.p50Ms} ms, p99 ${seen.p99Ms} ms (${lightRatio(seen)}x idle)`;
      }
      checks[scenario][via] = await stockCheck(merchantId, pick, sold);
      const cpu = `CPU per order: bench client ${summary.cpuMsPerCall} ms${via === "rpc" ? `, orders server ${summary.serverCpuMsPerOrder ?? "?"} ms` : ""}, MariaDB ${summary.mariadbCpuMsPerOrder ?? "?"} ms`;
      console.log(`  ${label}: p50 ${summary.p50Ms} ms, p99 ${summary.p99Ms} ms, ${summary.throughput} orders/s; ${cpu}${extra}`);
    }
  }

  const sellouts = SELLOUT ? { rpc: await sellout("rpc", rpcSellOrder), raw: await sellout("raw", rawSellOrder) } : undefined;
  for (const [via, r] of Object.entries(sellouts ?? {})) {
    errors.push(...r.errors.map((e) => `sellout ${via}: ${e}`));
    console.log(
      `  sellout ${via}: placed p50 ${r.placed.p50Ms} ms, p99 ${r.placed.p99Ms} ms; refused in the same burst p50 ${r.soldOut.p50Ms} ms, p99 ${r.soldOut.p99Ms} ms; ` +
        `refused once sold out (row locked elsewhere) p50 ${r.afterSoldOut.p50Ms} ms, max ${r.afterSoldOut.maxMs} ms` +
        (via === "rpc" ? `; ${selloutShed} calls refused for load and retried` : ""),
    );
  }

  const ratio = (s: Scenario) => results[s] && round(results[s].rpc.throughput / results[s].raw.throughput, 2);
  const lightP99Ratio = bystander && lightRatio(bystander);
  const cells = (s: Summary) => [
    s.calls,
    s.failures,
    s.p50Ms.toFixed(2),
    s.p90Ms.toFixed(2),
    s.p99Ms.toFixed(2),
    s.maxMs.toFixed(2),
    s.throughput.toFixed(1),
  ];
  const rows: (string | number)[][] = [];
  for (const scenario of SCENARIOS) {
    const r = results[scenario];
    rows.push([
      scenario,
      "rpc",
      ...cells(r.rpc),
      `${ratio(scenario)}x`,
      `${round(r.rpc.p50Ms / r.raw.p50Ms, 2)}x`,
      `${round(r.rpc.p99Ms / r.raw.p99Ms, 2)}x`,
    ]);
    rows.push([scenario, "raw mysql2", ...cells(r.raw), "1x", "1x", "1x"]);
  }
  rows.push(["idle", "light merchant rpc", ...cells(lightIdle), "", "", ""]);
  if (bystander) rows.push(["hot rpc (alongside)", "light merchant rpc", ...cells(bystander), "", "", `${lightP99Ratio}x idle`]);
  if (besideRaw) rows.push(["hot raw (alongside)", "light merchant rpc", ...cells(besideRaw), "", "", `${lightRatio(besideRaw)}x idle`]);
  console.log(
    "\n" +
      table(
        [
          "scenario",
          "path",
          "calls",
          "failures",
          "p50 ms",
          "p90 ms",
          "p99 ms",
          "max ms",
          "orders/s",
          "orders/s vs raw",
          "p50 vs raw",
          "p99 vs raw",
        ],
        rows,
      ),
  );

  const allTargets: { scenario: Scenario; target: string; value: string; pass: boolean }[] = [
    {
      scenario: "spread",
      target: `spread rpc p99 <= ${TARGET_SPREAD_P99_MS} ms`,
      value: `${results.spread?.rpc.p99Ms} ms`,
      pass: results.spread?.rpc.p99Ms <= TARGET_SPREAD_P99_MS,
    },
    {
      scenario: "spread",
      target: `spread rpc orders/s >= ${TARGET_THROUGHPUT_RATIO}x raw`,
      value: `${ratio("spread")}x (${results.spread?.rpc.throughput} vs ${results.spread?.raw.throughput})`,
      pass: ratio("spread") >= TARGET_THROUGHPUT_RATIO,
    },
    {
      scenario: "hot",
      target: `hot rpc orders/s >= ${TARGET_HOT_RATIO}x raw`,
      value: `${ratio("hot")}x (${results.hot?.rpc.throughput} vs ${results.hot?.raw.throughput})`,
      pass: ratio("hot") >= TARGET_HOT_RATIO,
    },
    {
      scenario: "hot",
      target: `light merchant p99 alongside hot <= ${TARGET_LIGHT_P99_RATIO}x its idle p99`,
      value: `${lightP99Ratio}x (${bystander?.p99Ms} vs ${lightIdle.p99Ms} ms)`,
      pass: lightP99Ratio !== undefined && lightP99Ratio <= TARGET_LIGHT_P99_RATIO,
    },
  ];
  const targets: { target: string; value: string; pass: boolean }[] = allTargets.filter((t) => SCENARIOS.includes(t.scenario));
  if (sellouts) {
    const { rpc, raw } = sellouts;
    console.log(
      `\n${table(
        [
          `sellout (issue 14): ${SELLOUT_ORDERS} orders at once on stock ${SELLOUT_STOCK}, then ${SELLOUT_ORDERS} more`,
          "rounds",
          "placed",
          "placed p50 / p99 ms",
          "refused in the burst",
          "refused p50 / p99 ms",
          "refused once sold out, row locked elsewhere: p50 / max ms",
          "result",
        ],
        (["rpc", "raw"] as const).map((via) => {
          const r = sellouts[via];
          return [
            via,
            r.rounds,
            r.placed.calls,
            `${r.placed.p50Ms} / ${r.placed.p99Ms}`,
            r.soldOut.calls,
            `${r.soldOut.p50Ms} / ${r.soldOut.p99Ms}`,
            `${r.afterSoldOut.p50Ms} / ${r.afterSoldOut.maxMs}`,
            r.bad.length === 0 ? "OK" : `WRONG: ${r.bad.join("; ")}`,
          ];
        }),
      )}`,
    );
    targets.push({
      target: `orders on a SKU known to be sold out refused without waiting for its row lock (held ${SELLOUT_LOCK_MS} ms elsewhere): max < ${SELLOUT_LOCK_MS} ms`,
      value: `max ${rpc.afterSoldOut.maxMs} ms, p50 ${rpc.afterSoldOut.p50Ms} ms (raw: p50 ${raw.afterSoldOut.p50Ms} ms)`,
      pass: rpc.afterSoldOut.maxMs < SELLOUT_LOCK_MS,
    });
  }
  console.log(
    `\n${table(
      [
        "orders server while the light merchant called",
        "event-loop delay p99 / max ms",
        "GC pauses (count: total, longer than 10 / 100 ms)",
      ],
      (
        [
          ["idle (the light merchant alone)", idleRuntime],
          ["hot rpc", hotRuntime],
        ] as const
      ).map(([phase, r]) => [phase, describeLoop(r), describeGc(r)]),
    )}`,
  );
  console.log(
    `\n${table(
      ["target", "measured", "result"],
      targets.map((t) => [t.target, t.value, t.pass ? "PASS" : "MISS"]),
    )}`,
  );

  const checkRows = SCENARIOS.flatMap((s) => (["rpc", "raw"] as const).map((v) => ({ scenario: s, path: v, ...checks[s][v] })));
  console.log(
    "\n" +
      table(
        ["oversell check", "skus", "stock decrease", "in order lines", "clients saw sold", "skus disagreeing", "result"],
        checkRows.map((c) => [
          `${c.scenario} ${c.path}`,
          c.skus,
          c.decrease,
          c.inLines,
          c.seen,
          c.bad.length,
          c.bad.length === 0 ? "OK" : "OVERSOLD",
        ]),
      ),
  );

  const file = writeResults("orders", {
    buyers: BUYERS,
    client: CLIENT,
    callsPerScenarioAndPath: CALLS,
    warmupPerScenarioAndPath: WARMUP,
    spreadSkus: SPREAD_SKUS,
    dbPoolSize: POOL_SIZE,
    rateLimitPerSec: RATE,
    hot: results.hot && { ...results.hot, rpcOverRawThroughput: ratio("hot") },
    spread: results.spread && { ...results.spread, rpcOverRawThroughput: ratio("spread") },
    lightMerchantIdle: lightIdle,
    lightMerchantDuringHotRpc: bystander,
    lightMerchantP99VsIdle: lightP99Ratio,
    /** The control: the light merchant alongside the hot raw phase, the orders server idle. */
    lightMerchantDuringHotRaw: besideRaw,
    lightMerchantP99VsIdleDuringHotRaw: besideRaw && lightRatio(besideRaw),
    /** The orders server's GC pauses and event-loop delay while the light merchant was measured alone, and beside the hot rpc phase. */
    serverRuntime: { idle: idleRuntime, hotRpc: hotRuntime },
    loadAverage: os.loadavg(),
    targets,
    shed,
    oversell: checkRows,
    sellout: sellouts && {
      orders: SELLOUT_ORDERS,
      stock: SELLOUT_STOCK,
      lockMs: SELLOUT_LOCK_MS,
      shedAndRetried: selloutShed,
      ...sellouts,
    },
    errors,
  });
  console.log(`\nwrote ${file}`);
  if (errors.length > 0) {
    console.error(`\ncalls failed, e.g.:\n  ${errors.slice(0, 5).join("\n  ")}`);
    process.exitCode = 1;
  }
  if (sellouts && (sellouts.rpc.bad.length > 0 || sellouts.raw.bad.length > 0)) {
    console.error("\na sellout placed or refused the wrong orders: see the table above");
    process.exitCode = 1;
  }
  if (checkRows.some((c) => c.bad.length > 0)) {
    console.error("\nstock and orders disagree: see the table above");
    process.exitCode = 1;
  }
} catch (error) {
  console.error("orders bench failed:", error);
  process.exitCode = 1;
} finally {
  grpcClient.close();
  await pool.end();
  light?.child.kill();
  await lightServer?.stop();
  await server.stop();
}

interface LightMerchant {
  merchantId: string;
  /** The light buyers' process (light-buyers.ts). */
  child: ChildProcess;
}

/** lightMerchant creates the second merchant, seeds its SKUs and forks its buyers' process (idle until started). */
async function lightMerchant(): Promise<LightMerchant> {
  const db = createDatabase<CommonTables>({ url: server.databaseUrl, poolSize: 1 });
  let created: { merchantId: string; apiKey: string };
  try {
    created = await createMerchant(db, "Light merchant");
  } finally {
    await db.destroy();
  }
  const skus = await seed(created.merchantId, "LIGHT-", LIGHT_SKUS);
  const baseUrl = (lightServer ?? server).url;
  const child = fork(
    path.join(import.meta.dirname, "light-buyers.ts"),
    [baseUrl, created.apiKey, String(LIGHT_BUYERS), String(LIGHT_PACE_MS), ...skus],
    {
      stdio: "inherit",
    },
  );
  return { merchantId: created.merchantId, child };
}

/** seed inserts `count` active products with `stock` units each (STOCK by default) for a merchant, in batches, and returns their SKUs. */
async function seed(merchantId: string, prefix: string, count: number, stock = STOCK): Promise<string[]> {
  const now = new Date();
  const skus = Array.from({ length: count }, (_, i) => `${prefix}${i}`);
  for (let i = 0; i < skus.length; i += 1000) {
    const batch = skus.slice(i, i + 1000);
    await pool.query(
      `INSERT INTO products (merchant_id, sku, product_id, title, description, price_minor, currency, stock, status, attributes, version, created_at, updated_at)
       VALUES ${batch.map(() => "(?, ?, ?, ?, '', 2999, 'EUR', ?, 'active', '{}', 1, ?, ?)").join(", ")}`,
      batch.flatMap((sku) => [merchantId, sku, newUlid(), `Doorbuster ${sku}`, stock, now, now]),
    );
  }
  return skus;
}

/** basket is one order's line: a random SKU of skus, 1 or 2 units. */
function basket(skus: string[]): Line[] {
  return [{ sku: skus[Math.floor(Math.random() * skus.length)]!, quantity: 1 + Math.floor(Math.random() * 2) }];
}

/**
 * rawOrder is the bare order transaction with mysql2: each line's
 * conditional decrement in SKU order (the order the service locks in), then
 * the order and its lines. The prices are not read back: this is the floor.
 */
async function rawOrder(merchantId: string, lines: Line[]): Promise<void> {
  const conn: PoolConnection = await pool.getConnection();
  try {
    await conn.query("BEGIN");
    const now = new Date();
    for (const line of [...lines].sort((a, b) => (a.sku < b.sku ? -1 : 1))) {
      const [updated] = await conn.query<ResultSetHeader>(
        "UPDATE products SET stock = stock - ?, version = version + 1, updated_at = ? WHERE merchant_id = ? AND sku = ? AND stock >= ?",
        [line.quantity, now, merchantId, line.sku, line.quantity],
      );
      if (updated.affectedRows !== 1) throw Object.assign(new Error(`${line.sku}: insufficient stock`), { insufficientStock: true });
    }
    const orderId = newUlid(now.getTime());
    await conn.query(
      `INSERT INTO orders (merchant_id, order_id, state, buyer_reference, currency, total_minor, payment_id, cancel_reason, version, created_at, updated_at, expire_at)
       VALUES (?, ?, 'pending_payment', 'black-friday', 'EUR', ?, NULL, '', 1, ?, ?, ?)`,
      [merchantId, orderId, lines.reduce((sum, l) => sum + 2999 * l.quantity, 0), now, now, new Date(now.getTime() + 15 * 60_000)],
    );
    await conn.query(
      `INSERT INTO order_lines (merchant_id, order_id, line_no, sku, product_id, title, quantity, unit_price_minor) VALUES ${lines.map(() => "(?, ?, ?, ?, '', '', ?, 2999)").join(", ")}`,
      lines.flatMap((l, i) => [merchantId, orderId, i + 1, l.sku, l.quantity]),
    );
    await conn.query("COMMIT");
  } catch (error) {
    await conn.query("ROLLBACK").catch(() => {});
    throw error;
  } finally {
    conn.release();
  }
}

/**
 * startLightTraffic starts the light merchant's buyers (light-buyers.ts, a
 * process of their own) and returns a function that stops them and gives
 * what they measured.
 */
function startLightTraffic(light: LightMerchant): () => Promise<LoadResult> {
  light.child.send("start");
  return async () => {
    const answered = new Promise<LightResult>((resolve) => light.child.once("message", (m) => resolve(m as LightResult)));
    light.child.send("stop");
    return { ...(await answered), cpuMs: 0 };
  };
}

interface StockCheck {
  skus: number;
  /** Totals over the SKUs: stock decrease, quantity in committed order lines, quantity of the orders clients saw succeed. */
  decrease: number;
  inLines: number;
  seen: number;
  /** The SKUs (at most 20) whose three figures disagree or whose stock went negative. */
  bad: { sku: string; stock: number; decrease: number; inLines: number; seen: number }[];
}

/** stockCheck compares, per SKU, the stock decrease with the committed order lines and with what clients saw sold. */
async function stockCheck(merchantId: string, skus: string[], seen: Map<string, number>): Promise<StockCheck> {
  const prefix = skus[0]!.replace(/\d+$/, "");
  const [stock] = await pool.query<RowDataPacket[]>("SELECT sku, stock FROM products WHERE merchant_id = ? AND sku LIKE ?", [
    merchantId,
    `${prefix}%`,
  ]);
  const [lines] = await pool.query<RowDataPacket[]>(
    "SELECT sku, SUM(quantity) AS sold FROM order_lines WHERE merchant_id = ? AND sku LIKE ? GROUP BY sku",
    [merchantId, `${prefix}%`],
  );
  const inLines = new Map(lines.map((r) => [r["sku"] as string, Number(r["sold"])]));
  const check: StockCheck = { skus: stock.length, decrease: 0, inLines: 0, seen: 0, bad: [] };
  for (const r of stock) {
    const sku = r["sku"] as string;
    const left = Number(r["stock"]);
    const decrease = STOCK - left;
    const sold = inLines.get(sku) ?? 0;
    const clients = seen.get(sku) ?? 0;
    check.decrease += decrease;
    check.inLines += sold;
    check.seen += clients;
    if ((left < 0 || decrease !== sold || sold !== clients) && check.bad.length < 20)
      check.bad.push({ sku, stock: left, decrease, inLines: sold, seen: clients });
  }
  if (check.skus !== skus.length)
    check.bad.push({ sku: `${prefix}*: ${check.skus} of ${skus.length} SKUs found`, stock: NaN, decrease: 0, inLines: 0, seen: 0 });
  return check;
}

/** The outcome of one sell-out order: placed, or refused for want of stock (anything else throws). */
type SellOutcome = "placed" | "soldOut";

interface SelloutResult {
  rounds: number;
  /** The first wave: its placed orders, and the ones it refused (the burst's later arrivals). */
  placed: Summary;
  soldOut: Summary;
  /** The second wave, on the sold-out SKU: every order refused. */
  afterSoldOut: Summary;
  /** What a round got wrong: placed orders other than the stock, stock left, order lines that disagree. */
  bad: string[];
  errors: string[];
}

/**
 * sellout fires SELLOUT_ORDERS single-unit orders at once on a fresh SKU
 * stocked SELLOUT_STOCK, then as many again once they are all answered,
 * SELLOUT_ROUNDS times, and times each call by wave and outcome. A round is
 * right when exactly the stock was placed, every other order refused, and
 * the SKU's stock and order lines agree with that.
 */
async function sellout(via: Via, order: (sku: string, requestId: string) => Promise<SellOutcome>): Promise<SelloutResult> {
  const times = { placed: [] as number[], soldOut: [] as number[], afterSoldOut: [] as number[] };
  const bad: string[] = [];
  const errors: string[] = [];
  /** wave sends the orders at once and returns how many were placed; refused calls' times go to refused. */
  const wave = async (sku: string, name: string, refused: number[]) => {
    let placed = 0;
    await Promise.all(
      Array.from({ length: SELLOUT_ORDERS }, async (_, i) => {
        const started = performance.now();
        try {
          const outcome = await order(sku, `sellout-${via}-${name}-${i}`);
          (outcome === "placed" ? times.placed : refused).push(performance.now() - started);
          if (outcome === "placed") placed++;
        } catch (error) {
          if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
        }
      }),
    );
    return placed;
  };
  const t0 = performance.now();
  for (let r = 0; r < SELLOUT_ROUNDS; r++) {
    const [sku] = await seed(merchantId, `SELLOUT-${via.toUpperCase()}-${r}-`, 1, SELLOUT_STOCK);
    const placed = await wave(sku!, `${r}a`, times.soldOut);
    // The second wave finds the row locked by another transaction (a restock's, a bulk job's) for SELLOUT_LOCK_MS.
    const holder = await pool.getConnection();
    let placedAfter: number;
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT stock FROM products WHERE merchant_id = ? AND sku = ? FOR UPDATE", [merchantId, sku]);
      const unlock = delay(SELLOUT_LOCK_MS).then(() => holder.query("ROLLBACK"));
      placedAfter = await wave(sku!, `${r}b`, times.afterSoldOut);
      await unlock;
    } finally {
      holder.release();
    }
    const [rows] = await pool.query<RowDataPacket[]>(
      "SELECT (SELECT stock FROM products WHERE merchant_id = ? AND sku = ?) AS stock, (SELECT COALESCE(SUM(quantity), 0) FROM order_lines WHERE merchant_id = ? AND sku = ?) AS sold",
      [merchantId, sku, merchantId, sku],
    );
    const stock = Number(rows[0]!["stock"]);
    const sold = Number(rows[0]!["sold"]);
    if (placed !== SELLOUT_STOCK || placedAfter !== 0 || stock !== 0 || sold !== SELLOUT_STOCK) {
      bad.push(`round ${r + 1}: ${placed} then ${placedAfter} placed, stock ${stock}, ${sold} in order lines (stock was ${SELLOUT_STOCK})`);
    }
  }
  const wallMs = performance.now() - t0;
  const summary = (latencies: number[]) => summarize({ latencies, failures: 0, errors: [], wallMs, cpuMs: 0 });
  return {
    rounds: SELLOUT_ROUNDS,
    placed: summary(times.placed),
    soldOut: summary(times.soldOut),
    afterSoldOut: summary(times.afterSoldOut),
    bad,
    errors,
  };
}

/**
 * placeOrder places an order over gRPC; a call shed for load (RESOURCE_EXHAUSTED
 * with RetryInfo) waits out its delay and is sent again, as a well-behaved
 * client does, its wait counting in the call's time. shed counts each one.
 */
async function placeOrder(req: MessageInitShape<typeof CreateOrderRequestSchema>, shed: () => void): Promise<void> {
  for (;;) {
    try {
      await createOrder(req);
      return;
    } catch (error) {
      const e = ConnectError.from(error);
      const retryDelay = e.findDetails(RetryInfoSchema)[0]?.retryDelay;
      if (e.code !== Code.ResourceExhausted || !retryDelay) throw error;
      shed();
      await delay(Number(retryDelay.seconds) * 1000 + retryDelay.nanos / 1e6);
    }
  }
}

/** rpcSellOrder orders one unit over gRPC (placeOrder); INSUFFICIENT_STOCK is its refusal. */
async function rpcSellOrder(sku: string, requestId: string): Promise<SellOutcome> {
  try {
    await placeOrder({ requestId, lines: [{ sku, quantity: 1 }], buyerReference: "black-friday" }, () => selloutShed++);
    return "placed";
  } catch (error) {
    const e = ConnectError.from(error);
    if (e.code === Code.FailedPrecondition && e.findDetails(ErrorInfoSchema)[0]?.reason === "INSUFFICIENT_STOCK") return "soldOut";
    throw error;
  }
}

/** rawSellOrder is rawOrder for one unit: refused when its conditional decrement finds no stock. */
async function rawSellOrder(sku: string): Promise<SellOutcome> {
  try {
    await rawOrder(merchantId, [{ sku, quantity: 1 }]);
    return "placed";
  } catch (error) {
    if ((error as { insufficientStock?: boolean }).insufficientStock) return "soldOut";
    throw error;
  }
}
