import test, { type ExecutionContext } from "ava";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { context, propagation, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from "@opentelemetry/sdk-trace";
import { nanos } from "@nats-io/transport-node";
import { RetentionPolicy } from "@nats-io/jetstream";
import { createLogger } from "../src/observe/log.ts";
import {
  connectNats,
  consumeWorkQueue,
  consumerLag,
  ensureWorkQueue,
  publishWithId,
  type NatsClient,
  type PoisonHandler,
  type WorkHandler,
  type WorkQueueConsumer,
  type WorkQueueConsumerSpec,
  type WorkQueueSpec,
} from "../src/nats/jetstream.ts";

const NATS_URL = process.env["TEST_NATS_URL"] ?? "127.0.0.1:4222";
const log = createLogger("nats-test", (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent");

// Tests in this file run in one worker: one tracer provider, spans told apart by subject.
const spans = new InMemorySpanExporter();
trace.setGlobalTracerProvider(new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }));
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());

const encode = (s: string) => new TextEncoder().encode(s);
const decode = (b: Uint8Array) => new TextDecoder().decode(b);
const noPoison: PoisonHandler = async () => {
  throw new Error("unexpected poison");
};

interface Fixture {
  spec: WorkQueueSpec;
  subject: string;
  /** Each call is a separate connection, like a separate worker process. */
  connect(): Promise<NatsClient>;
  consume(nats: NatsClient, options: Partial<WorkQueueConsumerSpec>, handler: WorkHandler, onPoison?: PoisonHandler): WorkQueueConsumer;
}

/** workQueue makes a stream and subject only this test uses, and removes them after. */
async function workQueue(t: ExecutionContext, name: string, limits: Partial<WorkQueueSpec> = {}): Promise<Fixture & { nats: NatsClient }> {
  const suffix = randomBytes(4).toString("hex");
  const subject = `test.${name}.${suffix}`;
  const spec: WorkQueueSpec = {
    stream: `TEST_${name}_${suffix}`.toUpperCase(),
    subjects: [`${subject}.>`],
    durable: "workers",
    ackWaitMs: 2_000,
    maxDeliver: 3,
    maxAckPending: 100,
    ...limits,
  };
  const clients: NatsClient[] = [];
  const loops: WorkQueueConsumer[] = [];
  t.teardown(async () => {
    await Promise.all(loops.map((l) => l.stop()));
    await clients[0]?.jsm.streams.delete(spec.stream).catch(() => {});
    await Promise.all(clients.map((c) => c.close()));
  });
  const fixture: Fixture = {
    spec,
    subject,
    async connect() {
      const nats = await connectNats({ servers: NATS_URL, name: `test-${name}` });
      clients.push(nats);
      return nats;
    },
    consume(nats, options, handler, onPoison = noPoison) {
      const loop = consumeWorkQueue(
        nats,
        { stream: spec.stream, durable: spec.durable, concurrency: 4, log, pullExpiresMs: 2_000, ...options },
        handler,
        onPoison,
      );
      loops.push(loop);
      return loop;
    },
  };
  const nats = await fixture.connect();
  await ensureWorkQueue(nats.jsm, spec);
  return { ...fixture, nats };
}

async function publishAll(nats: NatsClient, subject: string, ids: string[]): Promise<void> {
  await Promise.all(ids.map((id) => publishWithId(nats.js, `${subject}.work`, encode(id), id)));
}

async function waitFor(t: ExecutionContext, what: string, done: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
  t.pass();
}

async function streamEmpty(nats: NatsClient, stream: string): Promise<boolean> {
  return (await nats.jsm.streams.info(stream)).state.messages === 0;
}

const range = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

test("a msgId repeated within the duplicate window is stored once; a new attempt id is stored again", async (t) => {
  const q = await workQueue(t, "dedup");
  const subject = `${q.subject}.chunk`;
  const first = await publishWithId(q.nats.js, subject, encode("chunk 7"), "job1:7:1");
  const again = await publishWithId(q.nats.js, subject, encode("chunk 7"), "job1:7:1");
  const nextAttempt = await publishWithId(q.nats.js, subject, encode("chunk 7"), "job1:7:2");

  t.false(first.duplicate);
  t.true(again.duplicate, "the retried publish is reported as a duplicate");
  t.is(again.seq, first.seq, "and points at the stored original");
  t.false(nextAttempt.duplicate);
  t.not(nextAttempt.seq, first.seq);
  const info = await q.nats.jsm.streams.info(q.spec.stream);
  t.is(info.state.messages, 2);
  t.is(info.config.duplicate_window, nanos(120_000), "default window is 2 minutes");
  t.like(await consumerLag(q.nats.jsm, q.spec.stream, q.spec.durable), { pending: 2, ackPending: 0, redelivered: 0 });
});

test("ensureWorkQueue is idempotent across processes, applies changed limits, and refuses a non-work-queue stream", async (t) => {
  const q = await workQueue(t, "ensure");
  const other = await q.connect();
  const changed = { ...q.spec, ackWaitMs: 5_000, maxAckPending: 7, duplicateWindowMs: 30_000 };
  await Promise.all([ensureWorkQueue(q.nats.jsm, changed), ensureWorkQueue(other.jsm, changed)]);
  await ensureWorkQueue(q.nats.jsm, changed);

  const consumer = await q.nats.jsm.consumers.info(q.spec.stream, q.spec.durable);
  t.is(consumer.config.ack_wait, nanos(5_000));
  t.is(consumer.config.max_ack_pending, 7);
  t.is(consumer.config.max_deliver, 3);
  const stream = await q.nats.jsm.streams.info(q.spec.stream);
  t.is(stream.config.retention, RetentionPolicy.Workqueue);
  t.is(stream.config.duplicate_window, nanos(30_000));

  const limitsStream = `${q.spec.stream}_LIMITS`;
  await q.nats.jsm.streams.add({ name: limitsStream, subjects: [`${q.subject}-limits.>`] });
  t.teardown(() =>
    q.nats.jsm.streams.delete(limitsStream).then(
      () => {},
      () => {},
    ),
  );
  await t.throwsAsync(ensureWorkQueue(q.nats.jsm, { ...q.spec, stream: limitsStream, subjects: [`${q.subject}-limits.>`] }), {
    message: /needs "workqueue"/,
  });
});

test("two worker processes share one durable: 200 messages each handled exactly once, by both", async (t) => {
  const q = await workQueue(t, "share");
  const second = await q.connect();
  const handled = new Map<string, number>();
  const byWorker = { a: 0, b: 0 };
  const running = { a: 0, b: 0 };
  const peak = { a: 0, b: 0 };
  const handler =
    (worker: "a" | "b"): WorkHandler =>
    async (msg) => {
      peak[worker] = Math.max(peak[worker], ++running[worker]);
      await sleep(Math.random() * 4);
      running[worker]--;
      const id = decode(msg.data);
      handled.set(id, (handled.get(id) ?? 0) + 1);
      byWorker[worker]++;
    };
  q.consume(q.nats, { concurrency: 4 }, handler("a"));
  q.consume(second, { concurrency: 4 }, handler("b"));

  const ids = range(200, "m");
  await publishAll(q.nats, q.subject, ids);
  await waitFor(t, "200 messages", () => handled.size === 200);
  await waitFor(t, "acks", () => byWorker.a + byWorker.b >= 200);
  await sleep(200); // room for a wrongly redelivered message to show up

  t.deepEqual([...handled.keys()].sort(), [...ids].sort());
  t.deepEqual(
    [...handled.values()].filter((n) => n !== 1),
    [],
    "no message handled twice",
  );
  t.true(byWorker.a > 0 && byWorker.b > 0, `both workers took work: ${JSON.stringify(byWorker)}`);
  t.true(peak.a <= 4 && peak.b <= 4, `no worker ran more than its concurrency: ${JSON.stringify(peak)}`);
  t.is(Math.max(peak.a, peak.b), 4);
  await waitFor(t, "acknowledged messages to leave the stream", () => streamEmpty(q.nats, q.spec.stream));
  t.like(await consumerLag(q.nats.jsm, q.spec.stream, q.spec.durable), { pending: 0, ackPending: 0, redelivered: 0 });
});

test("a failing message is retried, poisoned once after maxDeliver, removed, and does not block the rest", async (t) => {
  const q = await workQueue(t, "poison", { maxDeliver: 3 });
  const attempts: number[] = [];
  const good: string[] = [];
  const poisoned: { id: string; deliveryCount: number; error: unknown }[] = [];
  q.consume(
    q.nats,
    { concurrency: 1, retryBackoff: { initialMs: 30, maxMs: 100 } },
    async (msg) => {
      const id = decode(msg.data);
      if (id === "bad") {
        attempts.push(msg.deliveryCount);
        throw new Error("row 12: price is not a number");
      }
      good.push(id);
    },
    async (msg, error) => {
      poisoned.push({ id: decode(msg.data), deliveryCount: msg.deliveryCount, error });
    },
  );
  await publishAll(q.nats, q.subject, ["bad"]);
  await publishAll(q.nats, q.subject, range(5, "good"));

  await waitFor(t, "poison", () => poisoned.length > 0 && good.length === 5);
  await sleep(300); // a second onPoison or a fourth attempt would show up here
  t.deepEqual(attempts, [1, 2, 3], "delivered maxDeliver times");
  t.is(poisoned.length, 1, "onPoison called exactly once");
  t.like(poisoned[0], { id: "bad", deliveryCount: 3 });
  t.is((poisoned[0]?.error as Error | undefined)?.message, "row 12: price is not a number");
  t.deepEqual([...good].sort(), range(5, "good").sort(), "later messages were processed");
  await waitFor(t, "the poisoned message to leave the stream", () => streamEmpty(q.nats, q.spec.stream));
  t.like(await consumerLag(q.nats.jsm, q.spec.stream, q.spec.durable), { pending: 0, ackPending: 0 });
});

for (const whenPoisonFails of ["leave", "terminate"] as const) {
  test(`a poison handler that throws: the message is ${whenPoisonFails === "leave" ? "left in the stream (default)" : "terminated (whenPoisonFails: terminate)"}`, async (t) => {
    const q = await workQueue(t, `poisonfails${whenPoisonFails}`, { maxDeliver: 2 });
    let poisonCalls = 0;
    q.consume(
      q.nats,
      { concurrency: 1, retryBackoff: { initialMs: 30, maxMs: 100 }, whenPoisonFails },
      async () => {
        throw new Error("always fails");
      },
      async () => {
        poisonCalls++;
        throw new Error("and so does the poison handler");
      },
    );
    await publishAll(q.nats, q.subject, ["bad"]);
    await waitFor(t, "the poison handler", () => poisonCalls === 1);
    if (whenPoisonFails === "terminate") {
      await waitFor(t, "the message to leave the stream", () => streamEmpty(q.nats, q.spec.stream));
    } else {
      await sleep(500);
      t.false(await streamEmpty(q.nats, q.spec.stream), "the message stays for an operator");
    }
    t.is(poisonCalls, 1);
  });
}

test("backpressure: with maxAckPending 5, at most 5 handlers run at once across workers", async (t) => {
  const q = await workQueue(t, "backpressure", { maxAckPending: 5 });
  const second = await q.connect();
  let running = 0;
  let peak = 0;
  let done = 0;
  const slow: WorkHandler = async () => {
    running++;
    peak = Math.max(peak, running);
    await sleep(150);
    running--;
    done++;
  };
  q.consume(q.nats, { concurrency: 10 }, slow);
  q.consume(second, { concurrency: 10 }, slow);
  await publishAll(q.nats, q.subject, range(30, "b"));
  await waitFor(t, "30 messages", () => done === 30);
  t.true(peak <= 5, `peak concurrency ${peak}`);
  t.is(peak, 5, "the limit is reached, so the bound is what holds it");
});

test("stop() finishes in-flight handlers, then handles nothing more; the rest goes to a new worker", async (t) => {
  const q = await workQueue(t, "stop", { ackWaitMs: 1_000 });
  const handled: string[] = [];
  let running = 0;
  let started = 0;
  const handler: WorkHandler = async (msg) => {
    started++;
    running++;
    await sleep(200);
    running--;
    handled.push(decode(msg.data));
  };
  const ids = range(20, "s");
  await publishAll(q.nats, q.subject, ids);
  const first = q.consume(q.nats, { concurrency: 3 }, handler);
  await waitFor(t, "three handlers running", () => running === 3);
  await first.stop();
  t.is(running, 0, "stop resolved only after in-flight handlers finished");
  t.is(handled.length, started, "every started handler completed");
  const handledByFirst = handled.length;
  t.true(handledByFirst >= 3 && handledByFirst < 20);

  await sleep(1_300); // past ackWait: a stopped loop that still pulled would handle more now
  t.is(handled.length, handledByFirst, "nothing handled after stop()");

  const second = await q.connect();
  q.consume(second, { concurrency: 3 }, handler);
  await waitFor(t, "the remaining messages", () => handled.length >= 20);
  await sleep(200);
  t.deepEqual([...handled].sort(), [...ids].sort(), "each message handled exactly once across both workers");
});

test("a handler slower than ackWait keeps its message via working() and is not redelivered", async (t) => {
  const q = await workQueue(t, "working", { ackWaitMs: 1_000 });
  const deliveries: number[] = [];
  // A free slot stands ready, so an expired ack timer would show up as a second delivery.
  q.consume(q.nats, { concurrency: 2 }, async (msg) => {
    deliveries.push(msg.deliveryCount);
    await sleep(2_600);
  });
  await publishAll(q.nats, q.subject, ["long"]);
  await waitFor(t, "the message to be acknowledged", () => streamEmpty(q.nats, q.spec.stream));
  t.deepEqual(deliveries, [1], "delivered once although it took 2.6 × ackWait");
  t.like(await consumerLag(q.nats.jsm, q.spec.stream, q.spec.durable), { redelivered: 0, ackPending: 0 });
});

test("the handler runs in the publisher's trace, in a process span under the send span", async (t) => {
  const q = await workQueue(t, "trace");
  const subject = `${q.subject}.work`;
  let seen: { traceId: string | undefined; headers: Record<string, string> } | undefined;
  q.consume(q.nats, { concurrency: 1 }, async (msg) => {
    seen = { traceId: trace.getActiveSpan()?.spanContext().traceId, headers: msg.headers };
  });

  const tracer = trace.getTracer("test");
  const enqueue = await tracer.startActiveSpan("enqueue chunk", async (span) => {
    await publishWithId(q.nats.js, subject, encode("x"), "job9:1:1", { "stockroom-schema": "1" });
    span.end();
    return span.spanContext();
  });
  await waitFor(t, "the handler", () => seen !== undefined);

  t.is(seen?.traceId, enqueue.traceId, "same trace id in the handler");
  t.regex(seen?.headers["traceparent"] ?? "", new RegExp(`^00-${enqueue.traceId}-[0-9a-f]{16}-01$`));
  t.is(seen?.headers["Nats-Msg-Id"], "job9:1:1");
  t.is(seen?.headers["stockroom-schema"], "1", "extra headers travel too");

  // Spans are named after low-cardinality destinations (the stream); the subject is an attribute.
  const of = (op: string) =>
    spans.getFinishedSpans().find((s) => s.name.startsWith(`${op} `) && s.attributes["messaging.destination.name"] === subject);
  await waitFor(t, "the process span to end", () => of("process") !== undefined);
  const send = of("send");
  const processSpan = of("process");
  t.is(processSpan?.name, `process ${q.spec.stream}`);
  t.is(send?.parentSpanContext?.spanId, enqueue.spanId);
  t.is(processSpan?.parentSpanContext?.spanId, send?.spanContext().spanId);
  t.is(processSpan?.spanContext().traceId, enqueue.traceId);
});
