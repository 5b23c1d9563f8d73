/**
 * `npm run bench:spike`: a Black-Friday spike against the orders process
 * (services/orders/src/main.ts on its own, as in production).
 *
 * 1. Capacity: one merchant's buyers in a closed loop (as many as the
 *    server's per-merchant bulkhead admits, so none is shed) for
 *    BENCH_CAPACITY_S seconds; capacity = orders/s.
 * 2. An open-loop arrival rate (new orders arrive on schedule whether or not
 *    earlier ones were answered): BENCH_SPIKE_BASE_S (30) s at half the
 *    capacity, BENCH_SPIKE_S (60) s at BENCH_SPIKE_MULTIPLIER (10) times that
 *    offered load, BENCH_SPIKE_AFTER_S (30) s back at half. Each order is one
 *    random SKU of BENCH_SPIKE_SKUS, 1 or 2 units. A shed call is not retried
 *    (the open loop's next arrivals are the retries), except the
 *    BENCH_SPIKE_SDK_PCT (2) % of the arrivals sent through the SDK client,
 *    which retries as it was written to. The direct gRPC calls (and the
 *    capacity phase's) come from a Go program (spike-load-go.ts,
 *    BENCH_SPIKE_CLIENT=go, the default where Go is) or from worker threads
 *    (spike-load.ts, BENCH_SPIKE_CLIENT=node: BENCH_SPIKE_THREADS (2) of
 *    them); the SDK's from a thread of their own. In one event loop the
 *    client could not send ten times the capacity, and the bench measured
 *    its own backlog. Both generators take 0.6–0.8 of the 2 cores the server
 *    runs on; the Go one handles each answer as it arrives, where a Node
 *    thread's lagging event loop added its delay to every latency.
 *
 * Printed per second: offered, admitted, shed, p50/p99 of the admitted
 * calls, the slowest shed answer, and the load threads' worst event-loop
 * delay (a call's latency includes it: on one machine the load generator
 * queues too). Checked and printed (targets of issue 14):
 * admitted p99 <= 250 ms during the spike; every shed call answered within
 * 50 ms with google.rpc.RetryInfo; per-second p99 back to the baseline (the
 * first phase's p99, x1.5 for noise, for 5 s running) within 10 s of the
 * spike's end; no oversell (per SKU, stock + quantity in order lines =
 * initial stock);
 * every order a client saw acknowledged is in the database; and every SDK
 * retry waited at least the RetryInfo delay of the attempt before it (its
 * attempts are timed by an interceptor). Also printed: the orders
 * server's and the load threads' CPU per phase, and the server's event-loop
 * delay and garbage collection pauses per phase, read from its own /metrics
 * (runtime-metrics.ts), and the direct gRPC sheds by the limit that
 * refused them (the refusal's message, figures as N) with how many of each
 * were slower than 50 ms: an early refusal before decoding (server.ts's
 * dispatchStreams) or a call that waited in a merchant's line and ran out.
 * Writes bench-results/spike.json.
 * Exits non-zero on a failed check of correctness (oversell, a lost order,
 * an unexpected error, a retry before its RetryInfo), never on a missed
 * latency target. The machine's load average is printed with the figures:
 * on a shared machine absolute numbers drift, the ratios less.
 */
import os from "node:os";
import path from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import { createPool, type RowDataPacket } from "mysql2/promise";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { newUlid, readInt } from "@stockroom/common";
import { freePort } from "@stockroom/common/testing";
import { catalogMigrations } from "@stockroom/catalog";
import { orderMigrations, parseOrderConfig } from "@stockroom/orders";
import { cpuTicks, procStatus, TICKS_PER_S } from "./procfs.ts";
import { startServerProcess } from "./server-process.ts";
import { createUnaryClient } from "./grpc-unary.ts";
import { describeGc, describeLoop, readRuntime, runtimePhase, type RuntimePhase, type RuntimeSnapshot } from "./runtime-metrics.ts";
import { createOrderer, type Acknowledged, type LoadReport, type LoadTask, type Via } from "./spike-load.ts";
import { loadClient, runGo } from "./spike-load-go.ts";
import { maxOf, median, percentile, round, table, tally, writeResults } from "./stats.ts";

const env = process.env;
const CAPACITY_S = readInt(env, "BENCH_CAPACITY_S", 10, 1, 600);
/**
 * BENCH_SPIKE_CAPACITY: the capacity (orders/s) to offer half and ten times
 * of, instead of measuring it: the offered load follows the measured
 * capacity, which drifts with the machine by tens of percent, so A/B runs
 * of two versions give both the same figure.
 */
const GIVEN_CAPACITY = readInt(env, "BENCH_SPIKE_CAPACITY", 0, 0, 1_000_000);
const BASE_S = readInt(env, "BENCH_SPIKE_BASE_S", 30, 1, 3600);
const SPIKE_S = readInt(env, "BENCH_SPIKE_S", 60, 1, 3600);
const AFTER_S = readInt(env, "BENCH_SPIKE_AFTER_S", 30, 1, 3600);
const MULTIPLIER = readInt(env, "BENCH_SPIKE_MULTIPLIER", 10, 1, 100);
const SKUS = readInt(env, "BENCH_SPIKE_SKUS", 1000, 1, 100_000);
/**
 * The share of arrivals sent through the SDK (BENCH_SPIKE_SDK_PCT): enough to
 * see its retries honour RetryInfo through the spike. The SDK costs the
 * shared cores about a millisecond of CPU per call, as much as the server;
 * at 10% of a spike its thread alone took half a core.
 */
const SDK_PCT = readInt(env, "BENCH_SPIKE_SDK_PCT", 2, 0, 50);
/** Worker threads sending the direct gRPC calls (BENCH_SPIKE_THREADS). */
const THREADS = readInt(env, "BENCH_SPIKE_THREADS", 2, 1, 64);
const STOCK = 1_000_000;
/**
 * Client connections the direct calls are spread over (BENCH_SPIKE_CONNECTIONS):
 * buyers arrive over many connections. One connection puts a single
 * client's connection at ten times capacity, which this machine has not
 * carried (the README, "Many calls on one connection"). A connection the
 * server closes is replaced, as a client reconnects, and counted.
 */
const CONNECTIONS = readInt(env, "BENCH_SPIKE_CONNECTIONS", 16, 1, 1024);
const TARGET_ADMITTED_P99_MS = 250;
const TARGET_SHED_MS = 50;
const TARGET_RECOVERY_S = 10;
/** A second is "back to baseline" when its p99 is within this factor of the first phase's. */
const BASELINE_TOLERANCE = 1.5;
/**
 * "Back" is a run of this many seconds within the tolerance: on this shared
 * machine a lone second 20 s later can exceed it (the load threads' own
 * event-loop stalls), which says nothing of recovering from the spike. The
 * stricter reading (every second after stays within it) is printed too.
 */
const RECOVERED_RUN_S = 5;
/**
 * The generator of the direct gRPC calls (BENCH_SPIKE_CLIENT, spike-load-go.ts):
 * "go" (default where Go is) or "node" (worker threads). Either runs on the
 * cores the server needs, at about the same CPU; the Go one measures with less
 * delay of its own.
 */
const CLIENT = loadClient(env["BENCH_SPIKE_CLIENT"]);
/** The bulkhead the server runs with (its defaults, or ORDER_IN_FLIGHT_* from this environment, which the server inherits). */
const BULKHEAD = parseOrderConfig(env).bulkhead;

/** The server's own /metrics (its GC pauses and event-loop delay per phase: runtime-metrics.ts). */
const metricsPort = await freePort();
const server = await startServerProcess({
  name: "bench_spike",
  entrypoint: path.join(import.meta.dirname, "..", "..", "services", "orders", "src", "main.ts"),
  migrations: [catalogMigrations, orderMigrations],
  // The per-merchant rate limit off: the bulkhead is what this measures.
  env: { ORDER_RATE_PER_SEC: "0", METRICS_PORT: String(metricsPort) },
});
const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
const pool = createPool({ uri: server.databaseUrl, connectionLimit: 2, timezone: "Z", charset: "utf8mb4" });
/**
 * The capacity phase's calls: plain gRPC over node:http2, framed by hand
 * (grpc-unary.ts), from this thread. The open loop runs on worker threads
 * (spike-load.ts), each with connections of its own.
 */
const grpcClient = createUnaryClient({ url: server.url, apiKey: server.apiKey, connections: 1 });
const unexpected = new Map<string, number>();
const unexpectedCount = () => [...unexpected.values()].reduce((a, b) => a + b, 0);
const acknowledged: Acknowledged[] = [];
let request = 0;
const order = createOrderer("grpc", SKUS, (req) => grpcClient.call(OrderService.method.createOrder, req), unexpected);

/** capacity runs buyers in a closed loop for seconds and returns the orders placed per second. */
async function capacity(buyers: number, seconds: number): Promise<number> {
  if (CLIENT === "go") {
    const r = await runGo({
      mode: "closed",
      url: server.url,
      apiKey: server.apiKey,
      connections: 1,
      skus: SKUS,
      name: `c${++request}`,
      buyers,
      seconds,
      warmSeconds: 0,
    });
    // Not push(...): a fast machine acknowledges more orders than a call takes arguments.
    for (const order of r.acknowledged) acknowledged.push(order);
    for (const [kind, n] of r.unexpected) tally(unexpected, kind, n);
    return r.placed / seconds;
  }
  const end = performance.now() + seconds * 1000;
  let placed = 0;
  await Promise.all(
    Array.from({ length: buyers }, async () => {
      while (performance.now() < end) {
        const c = await order(`capacity-${++request}`);
        if (c.acknowledged) {
          placed++;
          acknowledged.push(c.acknowledged);
        }
      }
    }),
  );
  return placed / seconds;
}

/**
 * openLoop runs the phases on the Go generator (or THREADS worker threads)
 * of gRPC calls and one thread of SDK calls (SDK_PCT of each phase's rate),
 * all starting together, and gathers their reports. The orders server's CPU is read here at each
 * phase's boundary.
 */
async function openLoop(phases: { name: string; seconds: number; rate: number }[]): Promise<LoadReport[]> {
  // Time for the threads to load and warm up (spike-load.ts) before the loop starts.
  const startAt = performance.timeOrigin + performance.now() + 4000;
  const share = (via: Via, of: number) =>
    phases.map((p) => ({ ...p, rate: (p.rate * (via === "sdk" ? SDK_PCT : 100 - SDK_PCT)) / 100 / of }));
  /** What every generator of the loop is told alike. */
  const target = { url: server.url, apiKey: server.apiKey, startAt, skus: SKUS };
  const tasks: LoadTask[] = [
    ...(CLIENT === "node"
      ? Array.from({ length: THREADS }, (_, i) => ({
          via: "grpc" as const,
          name: `g${i}`,
          phases: share("grpc", THREADS),
          connections: Math.max(1, Math.round(CONNECTIONS / THREADS)),
        }))
      : []),
    ...(SDK_PCT > 0 ? [{ via: "sdk" as const, name: "sdk", phases: share("sdk", 1), connections: 1 }] : []),
  ].map((t) => ({ ...t, ...target }));
  const reports = [
    ...(CLIENT === "go" ? [runGo({ ...target, mode: "open", name: "go", phases: share("grpc", 1), connections: CONNECTIONS })] : []),
    ...tasks.map(
      (task) =>
        new Promise<LoadReport>((resolve, reject) => {
          const worker = new Worker(new URL("./spike-load.ts", import.meta.url), { workerData: { spikeLoad: task } });
          worker.once("message", resolve);
          worker.once("error", reject);
          worker.once("exit", (code) => reject(new Error(`load thread ${task.name} exited (${code}) without a report`)));
        }),
    ),
  ];
  // The server's resident memory each second: the calls it holds in an overload are memory.
  const rss = setInterval(() => {
    const s = Math.floor((performance.timeOrigin + performance.now() - startAt) / 1000);
    if (s >= 0 && s < serverRssMb.length) serverRssMb[s] = procStatus(server.pid, "VmRSS");
  }, 250);
  // The server's CPU and its runtime metrics at each phase boundary.
  let at = startAt;
  const cpuAt: (number | undefined)[] = [];
  const runtimeAt: (RuntimeSnapshot | undefined)[] = [];
  for (const boundary of [0, ...phases.map((p) => p.seconds)]) {
    at += boundary * 1000;
    await delay(Math.max(0, at - (performance.timeOrigin + performance.now())));
    cpuAt.push(cpuTicks(server.pid));
    runtimeAt.push(await readRuntime(metricsUrl));
  }
  phases.forEach((p, i) => {
    const [a, b] = [cpuAt[i], cpuAt[i + 1]];
    serverCpu[p.name] = a === undefined || b === undefined ? undefined : round((b - a) / TICKS_PER_S / p.seconds, 2);
    const [ra, rb] = [runtimeAt[i], runtimeAt[i + 1]];
    serverRuntime[p.name] = ra && rb ? runtimePhase(ra, rb) : undefined;
  });
  try {
    return await Promise.all(reports);
  } finally {
    clearInterval(rss);
  }
}

/** The orders server's CPU per phase, in cores (CPU seconds per second). */
const serverCpu: Record<string, number | undefined> = {};
/**
 * The orders server's garbage collection pauses and event-loop delay per
 * phase, from its own metrics. Every call, admitted or shed, is an HTTP/2
 * stream of Node objects; at ten times capacity the young generation's
 * collections and the old generation's compactions stop the event loop for
 * tens of milliseconds at a time, and every call in the process waits
 * them out: this says how much of the tail they are.
 */
const serverRuntime: Record<string, RuntimePhase | undefined> = {};
/** The orders server's RSS (MB) per second of the open loop, its last sample in that second. */
const serverRssMb: (number | undefined)[] = Array.from({ length: BASE_S + SPIKE_S + AFTER_S });

try {
  const now = new Date();
  const skus = Array.from({ length: SKUS }, (_, i) => `SPIKE-${i}`);
  for (let i = 0; i < skus.length; i += 1000) {
    const batch = skus.slice(i, i + 1000);
    await pool.query(
      `INSERT INTO products (merchant_id, sku, product_id, title, description, price_minor, currency, stock, status, attributes, version, created_at, updated_at)
       VALUES ${batch.map(() => "(?, ?, ?, ?, '', 2999, 'EUR', ?, 'active', '{}', 1, ?, ?)").join(", ")}`,
      batch.flatMap((sku) => [server.merchantId, sku, newUlid(), `Doorbuster ${sku}`, STOCK, now, now]),
    );
  }
  const buyers = BULKHEAD.perMerchant > 0 ? BULKHEAD.perMerchant : 16;
  await capacity(buyers, 1); // warm-up
  const load0 = os.loadavg()[0]!;
  const measured = GIVEN_CAPACITY > 0 ? GIVEN_CAPACITY : await capacity(buyers, CAPACITY_S);
  const base = measured / 2;
  const phases = [
    { name: "base", seconds: BASE_S, rate: base },
    { name: "spike", seconds: SPIKE_S, rate: base * MULTIPLIER },
    { name: "after", seconds: AFTER_S, rate: base },
  ];
  console.log(
    `spike bench: capacity ${round(measured, 1)} orders/s (${GIVEN_CAPACITY > 0 ? "given: BENCH_SPIKE_CAPACITY" : `${buyers} buyers, closed loop, ${CAPACITY_S} s`}; load ${load0.toFixed(2)}); ` +
      `open loop ${BASE_S} s at ${round(base, 1)}/s, ${SPIKE_S} s at ${round(base * MULTIPLIER, 1)}/s, ${AFTER_S} s at ${round(base, 1)}/s; ` +
      `${SKUS} SKUs; ${CONNECTIONS} connections; load generator ${CLIENT === "go" ? "Go (grpc-go)" : `Node (${THREADS} threads)`}; ${SDK_PCT}% through the SDK with retries; bulkhead ${BULKHEAD.perMerchant} per merchant, ${BULKHEAD.total} in all`,
  );
  const load1 = os.loadavg()[0]!;
  const reports = await openLoop(phases);
  const load2 = os.loadavg()[0]!;
  const calls = reports.flatMap((r) => r.calls);
  for (const r of reports) {
    // Not push(...): a fast machine acknowledges more orders than a call takes arguments.
    for (const order of r.acknowledged) acknowledged.push(order);
    for (const [kind, n] of r.unexpected) tally(unexpected, kind, n);
  }
  const lost = new Map<string, number>();
  for (const [kind, n] of reports.flatMap((r) => r.lost)) tally(lost, kind, n);
  /** The load threads' event-loop delay per second: the worst thread's. */
  const clientLag = Array.from({ length: BASE_S + SPIKE_S + AFTER_S }, (_, s) => {
    const of = reports.flatMap((r) => r.lag[s] ?? []);
    return of.length === 0 ? undefined : { p99Ms: maxOf(of, (l) => l.p99Ms), maxMs: maxOf(of, (l) => l.maxMs) };
  });
  /** The load threads' CPU per phase, in cores. */
  const clientCpu = Object.fromEntries(
    phases.map((p, i) => [p.name, round(reports.reduce((sum, r) => sum + (r.cpuSeconds[i] ?? 0), 0) / p.seconds, 2)]),
  );
  const phaseOf = (at: number) => (at < BASE_S ? "base" : at < BASE_S + SPIKE_S ? "spike" : "after");

  // Per second (of sending), the direct calls: the SDK's include their retries' waits and are judged apart.
  const bySecond = Array.from({ length: BASE_S + SPIKE_S + AFTER_S }, (): typeof calls => []);
  for (const c of calls) bySecond[Math.floor(c.at)]?.push(c);
  const seconds = bySecond.map((these, s) => {
    const direct = these.filter((c) => c.via === "grpc");
    const admitted = direct
      .filter((c) => c.outcome === "admitted")
      .map((c) => c.ms)
      .sort((a, b) => a - b);
    const shed = direct.filter((c) => c.outcome === "shed");
    return {
      second: s,
      phase: phaseOf(s),
      offered: these.length,
      admitted: these.filter((c) => c.outcome === "admitted").length,
      shed: these.filter((c) => c.outcome === "shed").length,
      refusedOrFailed: these.filter((c) => c.outcome === "refused" || c.outcome === "error").length,
      p50Ms: round(percentile(admitted, 50), 1),
      p99Ms: round(percentile(admitted, 99), 1),
      slowestShedMs: round(
        maxOf(shed, (c) => c.ms),
        1,
      ),
      clientLagP99Ms: clientLag[s]?.p99Ms,
      clientLagMaxMs: clientLag[s]?.maxMs,
      serverRssMb: serverRssMb[s],
    };
  });
  console.log(
    `\n${table(
      [
        "s",
        "phase",
        "offered",
        "admitted",
        "shed",
        "refused/failed",
        "p50 ms",
        "p99 ms",
        "slowest shed ms",
        "client lag p99 / max ms",
        "server RSS MB",
      ],
      seconds.map((r) => [
        r.second,
        r.phase,
        r.offered,
        r.admitted,
        r.shed,
        r.refusedOrFailed,
        r.p50Ms,
        r.p99Ms,
        r.slowestShedMs,
        `${r.clientLagP99Ms ?? "-"} / ${r.clientLagMaxMs ?? "-"}`,
        r.serverRssMb ?? "-",
      ]),
    )}`,
  );

  const direct = calls.filter((c) => c.via === "grpc");
  const summary = Object.fromEntries(
    (["base", "spike", "after"] as const).map((phase) => {
      const these = direct.filter((c) => phaseOf(c.at) === phase);
      const admitted = these
        .filter((c) => c.outcome === "admitted")
        .map((c) => c.ms)
        .sort((a, b) => a - b);
      const seconds = phase === "base" ? BASE_S : phase === "spike" ? SPIKE_S : AFTER_S;
      return [
        phase,
        {
          offeredPerS: round(these.length / seconds, 1),
          admittedPerS: round(admitted.length / seconds, 1),
          shedPerS: round(these.filter((c) => c.outcome === "shed").length / seconds, 1),
          p50Ms: round(percentile(admitted, 50), 1),
          p99Ms: round(percentile(admitted, 99), 1),
          serverCpuCores: serverCpu[phase],
          clientCpuCores: clientCpu[phase],
          /** The median over the phase's seconds of the client's per-second event-loop delay p99. */
          clientLagP99Ms: round(median(clientLag.flatMap((l, i) => (l && phaseOf(i) === phase ? [l.p99Ms] : []))), 1),
          serverRssMaxMb: Math.max(...serverRssMb.flatMap((r, i) => (r !== undefined && phaseOf(i) === phase ? [r] : [0]))),
          serverRuntime: serverRuntime[phase],
        },
      ];
    }),
  );
  const shed = calls.filter((c) => c.outcome === "shed" && c.via === "grpc");
  const slowShed = shed.filter((c) => c.ms > TARGET_SHED_MS).length;
  /** Sheds still slower than the target once the client's own worst event-loop delay of their second is taken out (an estimate of the server's part). */
  const slowShedBeyondClientLag = shed.filter((c) => c.ms - (clientLag[Math.floor(c.at)]?.maxMs ?? 0) > TARGET_SHED_MS).length;
  const noRetryInfo = shed.filter((c) => !c.retryInfo).length;
  /** The direct sheds by the limit that refused them (the message's text, figures as N): which of them were slow. */
  const shedByReason = [...Map.groupBy(shed, (c) => c.reason ?? "(no message)")]
    .map(([reason, cs]) => {
      const ms = cs.map((c) => c.ms).sort((a, b) => a - b);
      return {
        reason,
        calls: cs.length,
        slower: cs.filter((c) => c.ms > TARGET_SHED_MS).length,
        p50Ms: round(percentile(ms, 50), 1),
        p99Ms: round(percentile(ms, 99), 1),
        maxMs: round(ms.at(-1)!, 1),
      };
    })
    .sort((a, b) => b.calls - a.calls);
  const baseline = summary["base"]!.p99Ms;
  const spikeEnd = BASE_S + SPIKE_S;
  const after = seconds.filter((r) => r.second >= spikeEnd);
  const within = (r: (typeof after)[number]) => !(r.p99Ms > baseline * BASELINE_TOLERANCE);
  const back = after.findIndex((_, i) => i + RECOVERED_RUN_S <= after.length && after.slice(i, i + RECOVERED_RUN_S).every(within));
  const recoveryS = back < 0 ? undefined : back;
  const settled = after.findIndex((_, i) => after.slice(i).every(within));
  const recoveryStrictS = settled < 0 ? undefined : settled;

  // SDK retries: each attempt after a RetryInfo began at least its delay after that attempt ended (the SDK thread checks).
  const retries = reports.reduce((n, r) => n + r.retries, 0);
  const early = reports.flatMap((r) => r.early);

  // Correctness: per SKU, stock + quantity in committed lines = initial; every acknowledged order is there.
  const [stockRows] = await pool.query<RowDataPacket[]>("SELECT sku, stock FROM products WHERE merchant_id = ?", [server.merchantId]);
  const [lineRows] = await pool.query<RowDataPacket[]>(
    "SELECT sku, SUM(quantity) AS sold, COUNT(*) AS n FROM order_lines WHERE merchant_id = ? GROUP BY sku",
    [server.merchantId],
  );
  const sold = new Map(lineRows.map((r) => [r["sku"] as string, Number(r["sold"])]));
  const oversold = stockRows.filter((r) => Number(r["stock"]) < 0 || Number(r["stock"]) + (sold.get(r["sku"] as string) ?? 0) !== STOCK);
  const [orderRows] = await pool.query<RowDataPacket[]>("SELECT order_id FROM orders WHERE merchant_id = ?", [server.merchantId]);
  const stored = new Set(orderRows.map((r) => r["order_id"] as string));
  const missing = acknowledged.filter((a) => !stored.has(a.orderId));

  const targets = [
    {
      target: `admitted p99 during the spike <= ${TARGET_ADMITTED_P99_MS} ms`,
      value: `${summary["spike"]!.p99Ms} ms`,
      pass: summary["spike"]!.p99Ms <= TARGET_ADMITTED_P99_MS,
    },
    {
      target: `every shed call answered <= ${TARGET_SHED_MS} ms with RetryInfo`,
      value: `${shed.length} shed: ${slowShed} slower, ${noRetryInfo} without RetryInfo; slowest ${round(
        maxOf(shed, (c) => c.ms),
        1,
      )} ms`,
      pass: slowShed === 0 && noRetryInfo === 0,
    },
    {
      target: `p99 back to baseline (${baseline} ms x${BASELINE_TOLERANCE}, ${RECOVERED_RUN_S} s running) <= ${TARGET_RECOVERY_S} s after the spike`,
      value:
        (recoveryS === undefined ? "not within the after phase" : `${recoveryS} s`) +
        ` (every second after within it: ${recoveryStrictS === undefined ? "never" : `from ${recoveryStrictS} s`})`,
      pass: recoveryS !== undefined && recoveryS <= TARGET_RECOVERY_S,
    },
    {
      target: "no oversell (stock + sold = initial, per SKU)",
      value: `${oversold.length} of ${stockRows.length} SKUs disagree`,
      pass: oversold.length === 0,
    },
    {
      target: "every acknowledged order is in the database",
      value: `${acknowledged.length - missing.length} of ${acknowledged.length} (${stored.size} stored)`,
      pass: missing.length === 0,
    },
    {
      target: "SDK retries wait at least RetryInfo's delay",
      value: `${retries} retries after RetryInfo, ${early.length} early`,
      pass: early.length === 0,
    },
    { target: "no unexpected errors", value: `${unexpectedCount()}`, pass: unexpected.size === 0 },
  ];
  const lagNote =
    `sheds slower than ${TARGET_SHED_MS} ms once the client's own worst event-loop delay of their second is taken out: ` +
    `${slowShedBeyondClientLag} of ${shed.length} (an estimate of the server's part; not a target)`;
  console.log(
    `\n${table(
      [
        "phase",
        "offered/s",
        "admitted/s",
        "shed/s",
        "admitted p50 ms",
        "admitted p99 ms",
        "server CPU (cores)",
        "bench client CPU (cores)",
        "client loop lag p99 ms",
        "server RSS max MB",
      ],
      Object.entries(summary).map(([p, s]) => [
        p,
        s.offeredPerS,
        s.admittedPerS,
        s.shedPerS,
        s.p50Ms,
        s.p99Ms,
        s.serverCpuCores ?? "?",
        s.clientCpuCores ?? "?",
        s.clientLagP99Ms,
        s.serverRssMaxMb,
      ]),
    )}`,
  );
  console.log(
    `\n${table(
      ["phase", "server event-loop delay p99 / max ms", "server GC pauses (count: total, longer than 10 / 100 ms)"],
      Object.entries(summary).map(([p, s]) => [p, describeLoop(s.serverRuntime), describeGc(s.serverRuntime)]),
    )}`,
  );
  console.log(
    `\n${table(
      ["target", "measured", "result"],
      targets.map((t) => [t.target, t.value, t.pass ? "PASS" : "MISS"]),
    )}`,
  );
  console.log(
    `\n${table(
      ["direct sheds by refusal", "calls", `slower than ${TARGET_SHED_MS} ms`, "p50 ms", "p99 ms", "max ms"],
      shedByReason.map((r) => [r.reason, r.calls, r.slower, r.p50Ms, r.p99Ms, r.maxMs]),
    )}`,
  );
  console.log(`\n${lagNote}`);
  console.log(`load average (1 min): ${load1.toFixed(2)} at the start, ${load2.toFixed(2)} at the end`);
  const file = writeResults("spike", {
    capacityPerS: round(measured, 1),
    capacityBuyers: buyers,
    loadClient: CLIENT,
    phases,
    bulkhead: BULKHEAD,
    sdkSharePct: SDK_PCT,
    perSecond: seconds,
    summary,
    recoverySeconds: recoveryS,
    recoveryStrictSeconds: recoveryStrictS,
    targets,
    slowShedBeyondClientLag,
    shedByReason,
    sdkRetries: { retries, early },
    unexpected: Object.fromEntries(unexpected),
    lostSessions: Object.fromEntries(lost),
    loadAverage: { start: load1, end: load2 },
  });
  console.log(`wrote ${file}`);
  if (early.length > 0) console.error(`SDK retries earlier than RetryInfo:\n  ${early.join("\n  ")}`);
  if (lost.size > 0) console.error(`connections lost and replaced: ${[...lost].map(([k, n]) => `${n} × ${k}`).join("; ")}`);
  if (unexpected.size > 0) {
    const kinds = [...unexpected].sort((a, b) => b[1] - a[1]).slice(0, 10);
    console.error(`unexpected errors by kind (the ${kinds.length} most common):\n  ${kinds.map(([k, n]) => `${n} × ${k}`).join("\n  ")}`);
  }
  if (oversold.length > 0 || missing.length > 0 || early.length > 0 || unexpected.size > 0) process.exitCode = 1;
} catch (error) {
  console.error("spike bench failed:", error);
  process.exitCode = 1;
} finally {
  await pool.end();
  grpcClient.close();
  await server.stop();
}
