/**
 * bench:spike's load generator: one worker thread of the open loop. Each
 * thread sends its share of every phase's arrival rate on connections of its
 * own, and reports every call it sent when the loop is over.
 *
 * Why threads: in one event loop, ten times the orders server's capacity
 * (some 4,600 calls/s here) took the bench client past a core of its own.
 * Its loop then stalled for seconds, sent in bursts and read the answers
 * late, and the bench measured its own backlog: sheds "answered" in 20 s by
 * a server that was 0.8 cores busy. Spread over threads, each loop keeps up
 * (its per-second event-loop delay is reported, and a call's latency still
 * includes it).
 *
 * A "grpc" thread calls over gRPC framed by hand (grpc-unary.ts) and never
 * retries: the open loop's next arrivals are the retries. An "sdk" thread
 * calls through the SDK, which retries RESOURCE_EXHAUSTED after RetryInfo's
 * delay as it was written to; every attempt is timed by an interceptor, and
 * the thread reports each retry that began before the delay of the attempt
 * before it had passed.
 */
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
// biome-ignore lint/style/noRestrictedImports: the bench measures the SDK as written, without building its dist first
import { createStockroomClient, RateLimitedError, StockroomError } from "../../sdk/src/index.ts";
import { createUnaryClient } from "./grpc-unary.ts";
import { round, tally } from "./stats.ts";

export type Outcome = "admitted" | "shed" | "refused" | "error";
export type Via = "grpc" | "sdk";

export interface Call {
  /** Seconds since the open loop started, when the call was sent. */
  at: number;
  ms: number;
  outcome: Outcome;
  via: Via;
  retryInfo: boolean;
  /** A shed call's refusal (shedReason): which of the server's limits turned it away. */
  reason?: string;
}

/** shedReason is a refusal's message without its figures and retry delay, so the calls one limit refused share it (spike-load-go's shedReason). */
export function shedReason(message: string): string {
  return message.split(";")[0]!.replace(/\d+/g, "N");
}

export interface Acknowledged {
  orderId: string;
  sku: string;
  quantity: number;
}

export interface Phase {
  name: string;
  seconds: number;
  /** Arrivals per second, of this thread alone. */
  rate: number;
}

export interface LoadTask {
  url: string;
  apiKey: string;
  via: Via;
  /** Connections of this thread's own (grpc threads). */
  connections: number;
  phases: Phase[];
  /** When the open loop starts, in ms since the epoch (performance.timeOrigin + performance.now()), the same for every thread. */
  startAt: number;
  skus: number;
  /** Prefixes this thread's request ids, unique among the threads. */
  name: string;
}

export interface LoadReport {
  calls: Call[];
  acknowledged: Acknowledged[];
  /** Unexpected errors by kind: the path and message. */
  unexpected: [string, number][];
  /** This thread's event-loop delay per second of the loop (p99 and max, ms). */
  lag: ({ p99Ms: number; maxMs: number } | undefined)[];
  /** This thread's CPU per phase, in CPU seconds. */
  cpuSeconds: number[];
  /** SDK threads: retries after a RetryInfo, and those that began early. */
  retries: number;
  early: string[];
  /** Connections the server closed or lost, by error, each replaced. */
  lost: [string, number][];
}

/** An order placer: one random SKU of skus, 1 or 2 units, and what became of it. */
export type Orderer = (requestId: string) => Promise<Omit<Call, "at"> & { acknowledged?: Acknowledged }>;

/** createOrderer places orders through send and classifies the outcome (unexpected errors are tallied by kind). */
export function createOrderer(
  via: Via,
  skus: number,
  send: (req: { requestId: string; lines: { sku: string; quantity: number }[]; buyerReference: string }) => Promise<{
    order?: { id: string };
  }>,
  unexpected: Map<string, number>,
): Orderer {
  return async (requestId) => {
    const sku = `SPIKE-${Math.floor(Math.random() * skus)}`;
    const quantity = 1 + Math.floor(Math.random() * 2);
    const t0 = performance.now();
    try {
      const { order } = await send({ requestId, lines: [{ sku, quantity }], buyerReference: "black-friday" });
      return {
        ms: performance.now() - t0,
        outcome: "admitted",
        via,
        retryInfo: false,
        acknowledged: { orderId: order!.id, sku, quantity },
      };
    } catch (error) {
      const ms = performance.now() - t0;
      // The SDK throws its own errors (RESOURCE_EXHAUSTED is its RateLimitedError, with RetryInfo's delay).
      const code = error instanceof StockroomError ? error.code : ConnectError.from(error).code;
      const retryInfo = error instanceof RateLimitedError ? error.retryDelayMs !== undefined : hasRetryInfo(ConnectError.from(error));
      if (code === Code.ResourceExhausted)
        return { ms, outcome: "shed", via, retryInfo, reason: shedReason(error instanceof Error ? error.message : String(error)) };
      if (code === Code.FailedPrecondition) return { ms, outcome: "refused", via, retryInfo: false };
      tally(unexpected, `${via}: ${error instanceof Error ? error.message : String(error)}`);
      return { ms, outcome: "error", via, retryInfo: false };
    }
  };
}

/** hasRetryInfo says whether an error carries google.rpc.RetryInfo, once per error (grpc-unary.ts shares the errors of equal answers). */
function hasRetryInfo(error: ConnectError): boolean {
  let has = retryInfoOf.get(error);
  if (has === undefined) {
    has = error.findDetails(RetryInfoSchema).length > 0;
    retryInfoOf.set(error, has);
  }
  return has;
}
const retryInfoOf = new WeakMap<ConnectError, boolean>();

/** The clock every thread shares: ms since the epoch. */
const epochMs = () => performance.timeOrigin + performance.now();

async function run(task: LoadTask): Promise<LoadReport> {
  const unexpected = new Map<string, number>();
  /** Every attempt of each SDK call, by request_id, as the interceptor saw them. */
  const attempts = new Map<string, { start: number; end: number; retryDelayMs?: number }[]>();
  const timeAttempts: Interceptor = (next) => async (req) => {
    const requestId = (req.message as { requestId?: string }).requestId ?? "";
    const attempt: { start: number; end: number; retryDelayMs?: number } = { start: performance.now(), end: 0 };
    attempts.set(requestId, [...(attempts.get(requestId) ?? []), attempt]);
    try {
      return await next(req);
    } catch (error) {
      const d = ConnectError.from(error).findDetails(RetryInfoSchema)[0]?.retryDelay;
      if (d) attempt.retryDelayMs = Number(d.seconds) * 1000 + d.nanos / 1e6;
      throw error;
    } finally {
      attempt.end = performance.now();
    }
  };
  const grpc = task.via === "grpc" ? createUnaryClient({ url: task.url, apiKey: task.apiKey, connections: task.connections }) : undefined;
  const sdk =
    task.via === "sdk"
      ? createStockroomClient({ baseUrl: task.url, apiKey: task.apiKey, transport: "grpc", interceptors: [timeAttempts] })
      : undefined;
  const acknowledged: Acknowledged[] = [];
  const order = createOrderer(
    task.via,
    task.skus,
    (req) => (sdk ? sdk.orders.createOrder(req) : grpc!.call(OrderService.method.createOrder, req)),
    unexpected,
  );

  const calls: Call[] = [];
  const pending = new Set<Promise<void>>();
  const total = task.phases.reduce((s, p) => s + p.seconds, 0);
  /** due is how many calls the schedule has sent by second t. */
  const due = (t: number) => {
    let n = 0;
    let start = 0;
    for (const p of task.phases) {
      n += p.rate * Math.max(0, Math.min(t, start + p.seconds) - start);
      start += p.seconds;
    }
    return Math.floor(n);
  };
  const lag: LoadReport["lag"] = [];
  const cpuAt: number[] = [];
  const cpu = () => {
    const u = process.threadCpuUsage();
    return (u.user + u.system) / 1e6;
  };
  // Warm up (the thread's JIT, its connections) before the loop: a cold thread's first calls are its own, not the server's.
  for (let round = 0; round < 5 && epochMs() < task.startAt - 500; round++) {
    const warm = await Promise.all(Array.from({ length: 8 }, (_, i) => order(`spike-${task.name}-warm-${round}-${i}`)));
    for (const w of warm) if (w.acknowledged) acknowledged.push(w.acknowledged);
  }
  const wait = task.startAt - epochMs();
  if (wait > 0) await delay(wait);
  const monitor = monitorEventLoopDelay({ resolution: 5 });
  monitor.enable();
  cpuAt.push(cpu());
  let sent = 0;
  let lagSecond = 0;
  let phase = 0;
  let phaseEnd = task.phases[0]!.seconds;
  for (;;) {
    const t = (epochMs() - task.startAt) / 1000;
    if (Math.floor(t) > lagSecond) {
      lag[lagSecond] = { p99Ms: round(monitor.percentile(99) / 1e6, 1), maxMs: round(monitor.max / 1e6, 1) };
      monitor.reset();
      lagSecond = Math.floor(t);
    }
    while (t >= phaseEnd && phase < task.phases.length) {
      cpuAt.push(cpu());
      phase++;
      phaseEnd += task.phases[phase]?.seconds ?? 0;
    }
    if (t >= total) break;
    for (const target = due(t); sent < target; sent++) {
      const p = order(`spike-${task.name}-${sent}`).then(({ acknowledged: ack, ...c }) => {
        calls.push({ at: t, ...c });
        if (ack) acknowledged.push(ack);
      });
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    await delay(2);
  }
  monitor.disable();
  await Promise.all(pending);

  // SDK retries: each attempt after a RetryInfo began at least its delay after that attempt ended.
  let retries = 0;
  const early: string[] = [];
  for (const [requestId, list] of attempts) {
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1]!;
      if (prev.retryDelayMs === undefined) continue;
      retries++;
      const waited = list[i]!.start - prev.end;
      // 1 ms of slack: timers fire on whole milliseconds.
      if (waited < prev.retryDelayMs - 1 && early.length < 10)
        early.push(`${requestId}: waited ${round(waited, 1)} ms, RetryInfo said ${prev.retryDelayMs}`);
    }
  }
  sdk?.close();
  grpc?.close();
  return {
    calls,
    acknowledged,
    unexpected: [...unexpected],
    lag,
    cpuSeconds: task.phases.map((_, i) => (cpuAt[i + 1] ?? cpuAt.at(-1)!) - cpuAt[i]!),
    retries,
    early,
    lost: [...(grpc?.lost ?? [])],
  };
}

if (!isMainThread && (workerData as { spikeLoad?: LoadTask } | undefined)?.spikeLoad) {
  parentPort!.postMessage(await run((workerData as { spikeLoad: LoadTask }).spikeLoad));
}
