import { context, propagation, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context } from "@opentelemetry/api";
import {
  AckPolicy,
  DeliverPolicy,
  jetstreamManager,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type Consumer,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from "@nats-io/jetstream";
import { readFileSync } from "node:fs";
import {
  connect,
  credsAuthenticator,
  errors,
  headers as natsHeaders,
  millis,
  nanos,
  type ConnectionOptions,
  type MsgHdrs,
  type NatsConnection,
} from "@nats-io/transport-node";
import type { NatsSecurity } from "../config.ts";
import type { Logger } from "../observe/log.ts";
import { linkToActive } from "../observe/trace-context.ts";
import { pause } from "../pause.ts";
import { taskFailures } from "../task-failures.ts";
import { unavailableBackend } from "../unavailable.ts";

/** NatsDeps is what publishers, workers and admin code take as dependencies. */
export interface NatsDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/** NatsClient is an open connection; close drains it. */
export interface NatsClient extends NatsDeps {
  close(): Promise<void>;
}

export interface NatsOptions {
  /** e.g. "127.0.0.1:4222" or several cluster seeds. */
  servers: string | string[];
  /** Connection name shown by the server (`nats server report connections`). */
  name: string;
  /** When given, disconnects, reconnects and async errors are logged. */
  log?: Logger;
  /** Credentials and TLS (ApiConfig.natsSecurity, from NATS_CREDS_FILE, NATS_USER/NATS_PASSWORD, NATS_TLS_*). */
  security?: NatsSecurity;
}

/**
 * natsConnectOptions turns NatsOptions into the client's connection options:
 * reconnecting forever, with the credentials and TLS settings of `security`.
 * A creds file is read at each (re)connect, so a rotated file is picked up.
 */
export function natsConnectOptions(options: NatsOptions): ConnectionOptions {
  const { security = {} } = options;
  const credsFile = security.credsFile;
  return {
    servers: options.servers,
    name: options.name,
    maxReconnectAttempts: -1,
    ...(credsFile !== undefined && { authenticator: credsAuthenticator(() => readFileSync(credsFile)) }),
    ...(security.user !== undefined && { user: security.user, pass: security.password }),
    // An object, even empty, makes the client require TLS; the server's certificate is verified (system CAs without caFile).
    ...(security.tls && { tls: { ...security.tls } }),
  };
}

const tracer = trace.getTracer("stockroom.nats");

/** Server error codes (nats-server errors.json) that ensureWorkQueue recovers from. */
const STREAM_NAME_IN_USE = 10058;
const CONSUMER_ALREADY_EXISTS = 10148;
const CONSUMER_NAME_IN_USE = 10013;

/**
 * connectNats opens a connection that reconnects forever (workers outlive a
 * NATS restart) and fails fast when the account has no JetStream.
 */
export async function connectNats(options: NatsOptions): Promise<NatsClient> {
  const nc = await connect(natsConnectOptions(options));
  try {
    const jsm = await jetstreamManager(nc);
    const js = jsm.jetstream();
    if (options.log) void logStatus(nc, options.log);
    return {
      nc,
      js,
      jsm,
      async close() {
        if (nc.isClosed() || nc.isDraining()) return;
        // Drained: what is in flight goes out first. A connection whose server is away has nothing to drain
        // to ("connection disconnected"): it is closed instead, so a process stopped during an outage exits cleanly.
        await nc.drain().catch(() => nc.close());
      },
    };
  } catch (error) {
    await nc.close();
    throw error;
  }
}

async function logStatus(nc: NatsConnection, log: Logger): Promise<void> {
  for await (const s of nc.status()) {
    switch (s.type) {
      case "disconnect":
        log.warn("nats disconnected", { server: s.server });
        break;
      case "reconnect":
        log.info("nats reconnected", { server: s.server });
        break;
      case "ldm":
        log.warn("nats server entering lame duck mode", { server: s.server });
        break;
      case "error":
        log.error("nats async error", { error: s.error });
        break;
      case "slowConsumer":
        log.warn("nats slow consumer", { subject: s.sub.getSubject(), pending: s.pending });
        break;
    }
  }
}

export interface WorkQueueSpec {
  stream: string;
  subjects: string[];
  /** The one durable pull consumer every worker process shares. */
  durable: string;
  /** How long a delivered message may go unacknowledged before it is redelivered. */
  ackWaitMs: number;
  /** Deliveries per message; the last failed one goes to onPoison. */
  maxDeliver: number;
  /** Messages out with workers at once, across all processes: the backpressure bound. */
  maxAckPending: number;
  /** How long a Nats-Msg-Id is remembered for deduplication (default 2 min). */
  duplicateWindowMs?: number;
  /** Stream replicas (default 1; 3 on a clustered JetStream). */
  replicas?: number;
}

/**
 * ensureWorkQueue creates or updates a work-queue stream (file storage,
 * deduplication window) and its durable pull consumer (explicit ack). Every
 * process may call it at start: identical configs are no-ops, changed limits
 * are applied in place, and a create race with another process ends in an
 * update. Retention and storage cannot change in place, so an existing stream
 * with others is an error.
 */
export async function ensureWorkQueue(jsm: JetStreamManager, spec: WorkQueueSpec): Promise<void> {
  await ensureStream(jsm, spec.stream, RetentionPolicy.Workqueue, "a work queue", {
    subjects: spec.subjects,
    duplicate_window: nanos(spec.duplicateWindowMs ?? 120_000),
    num_replicas: spec.replicas ?? 1,
  });
  await ensureDurableConsumer(jsm, spec.stream, spec);
}

export interface EventStreamSpec {
  stream: string;
  subjects: string[];
  /** How long a Nats-Msg-Id is remembered: a publish retried within it is stored once. */
  duplicateWindowMs: number;
  /** How long events are kept; a consumer further behind than this loses events (and needs a reindex). */
  maxAgeMs: number;
  /** Stream replicas (1 locally; 3 on a clustered JetStream). */
  replicas: number;
}

/**
 * ensureEventStream creates or updates a limits-retention stream of events:
 * unlike a work queue, each event stays for maxAgeMs whoever has read it, so
 * any number of consumers (search, order caches, notifications) read it
 * independently and a new one can start from the beginning. Like
 * ensureWorkQueue, it is safe for every process to call at start.
 */
export async function ensureEventStream(jsm: JetStreamManager, spec: EventStreamSpec): Promise<void> {
  await ensureStream(jsm, spec.stream, RetentionPolicy.Limits, "an event stream", {
    subjects: spec.subjects,
    duplicate_window: nanos(spec.duplicateWindowMs),
    max_age: nanos(spec.maxAgeMs),
    num_replicas: spec.replicas,
  });
}

/**
 * ensureStream creates a file-storage stream with this retention, or, when
 * it exists (another process made it first, or an earlier release), updates
 * its limits in place. Retention and storage cannot change in place, so an
 * existing stream with others is an error naming what `kind` needs.
 */
async function ensureStream(
  jsm: JetStreamManager,
  name: string,
  retention: RetentionPolicy,
  kind: string,
  limits: { subjects: string[]; duplicate_window: number; num_replicas: number; max_age?: number },
): Promise<void> {
  try {
    await jsm.streams.add({ name, retention, storage: StorageType.File, ...limits });
  } catch (error) {
    if (apiErrorCode(error) !== STREAM_NAME_IN_USE) throw error;
    const { config } = await jsm.streams.info(name);
    if (config.retention !== retention || config.storage !== StorageType.File) {
      throw new Error(
        `stream ${name} exists with retention "${config.retention}" and storage "${config.storage}"; ` +
          `${kind} needs "${retention}" and "file", which cannot be changed in place`,
        { cause: error },
      );
    }
    await jsm.streams.update(name, limits);
  }
}

export interface DurableConsumerSpec {
  durable: string;
  ackWaitMs: number;
  /** Deliveries per message; -1 retries forever. */
  maxDeliver: number;
  maxAckPending: number;
  /** Only messages on these subjects (e.g. "catalog.>"); all of the stream's when absent. */
  filterSubject?: string;
}

/**
 * ensureDurableConsumer creates or updates a durable pull consumer with
 * explicit acks that starts at the stream's first message. Its limits can
 * change in place; its filter cannot on nats-server 2.9, so keep it fixed.
 */
export async function ensureDurableConsumer(jsm: JetStreamManager, stream: string, spec: DurableConsumerSpec): Promise<void> {
  const limits = {
    ack_wait: nanos(spec.ackWaitMs),
    max_deliver: spec.maxDeliver,
    max_ack_pending: spec.maxAckPending,
  };
  try {
    await jsm.consumers.add(stream, {
      durable_name: spec.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ...(spec.filterSubject ? { filter_subject: spec.filterSubject } : {}),
      ...limits,
    });
  } catch (error) {
    // Servers from 2.10 refuse to "create" over an existing consumer whose config differs.
    const code = apiErrorCode(error);
    if (code !== CONSUMER_ALREADY_EXISTS && code !== CONSUMER_NAME_IN_USE) throw error;
    await jsm.consumers.update(stream, spec.durable, limits);
  }
}

function apiErrorCode(error: unknown): number | undefined {
  return error instanceof JetStreamApiError ? error.code : undefined;
}

export interface PublishResult {
  /** True when the stream already held a message with this id (within the duplicate window). */
  duplicate: boolean;
  /** The stream sequence of the stored message (the original one for a duplicate). */
  seq: number;
}

export interface PublishOptions {
  /**
   * The trace the message belongs to (e.g. restoreTraceContext of a stored
   * context), instead of the active one; the active span, if any, is then
   * linked from the publish span.
   */
  parent?: Context;
  /** More attributes for the publish span (ids, never secrets). */
  attributes?: Attributes;
  /**
   * The subject's shape without its ids (e.g. "bulk.chunk.{merchant}.{job}.{chunk}"):
   * the span is named after it, since a span name per merchant or job would
   * make every publish its own operation in Jaeger.
   */
  destinationTemplate?: string;
}

/**
 * publishWithId publishes under Nats-Msg-Id = msgId so a retried publish is
 * stored once, inside a producer span whose W3C trace context travels in
 * the headers; consumers continue that trace.
 */
export async function publishWithId(
  js: JetStreamClient,
  subject: string,
  data: Uint8Array,
  msgId: string,
  extraHeaders: Record<string, string> = {},
  options: PublishOptions = {},
): Promise<PublishResult> {
  if (msgId === "") throw new Error("publishWithId needs a non-empty msgId");
  const parent = options.parent ?? context.active();
  const span = tracer.startSpan(
    `send ${options.destinationTemplate ?? subject}`,
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        "messaging.system": "nats",
        "messaging.operation.type": "send",
        "messaging.destination.name": subject,
        ...(options.destinationTemplate ? { "messaging.destination.template": options.destinationTemplate } : {}),
        "messaging.message.id": msgId,
        "messaging.message.body.size": data.byteLength,
        ...options.attributes,
      },
      links: options.parent ? linkToActive(options.parent) : [],
    },
    parent,
  );
  try {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(extraHeaders)) h.set(k, v);
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(parent, span), carrier);
    for (const [k, v] of Object.entries(carrier)) h.set(k, v);
    const ack = await js.publish(subject, data, { msgID: msgId, headers: h });
    span.setAttribute("stockroom.nats.stream", ack.stream);
    span.setAttribute("stockroom.nats.duplicate", ack.duplicate);
    return { duplicate: ack.duplicate, seq: ack.seq };
  } catch (error) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
    throw error;
  } finally {
    span.end();
  }
}

/** WorkMessage is what a work-queue handler sees of one delivery. */
export interface WorkMessage {
  subject: string;
  data: Uint8Array;
  /** First value of each header, names as published (Nats-Msg-Id, traceparent, …). */
  headers: Record<string, string>;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** Stream sequence. */
  seq: number;
  /** Deliveries the consumer's max_deliver allows after this one (Infinity without a limit). */
  deliveriesLeft: number;
}

/**
 * Pass is what a handler returns for a message that is not for this process
 * (e.g. a chunk format it does not know): it is offered again after delayMs,
 * to this or another consumer process, without counting as a failure. The
 * delivery still counts toward max_deliver: a handler that passes on its last
 * deliveries must hand the work back another way (deliveriesLeft).
 */
export interface Pass {
  pass: { delayMs: number; reason: string };
}

// biome-ignore lint/suspicious/noConfusingVoidType: a handler that returns nothing (most do) is a plain async function
export type WorkHandler = (msg: WorkMessage) => Promise<void | Pass>;
/** PoisonHandler records a message that failed on its last delivery; it is terminated after. */
export type PoisonHandler = (msg: WorkMessage, error: unknown) => Promise<void>;

export interface WorkQueueConsumerSpec {
  stream: string;
  durable: string;
  /** Handlers running at once in this process; it never pulls more than it can start. */
  concurrency: number;
  log: Logger;
  /** Delay before a failed message is offered again: initialMs doubling per delivery, capped at maxMs, jittered. */
  retryBackoff?: { initialMs: number; maxMs: number };
  /** How long one pull request waits for messages (at least 1000, default 10 000). */
  pullExpiresMs?: number;
  /**
   * What happens to a message whose onPoison handler threw on its last
   * delivery. "leave" (the default) keeps it in the stream, never delivered
   * again, for an operator to inspect. "terminate" removes it: for consumers
   * whose source of truth re-publishes what is lost (the bulk reconciler),
   * where a message left behind would look alive forever and stall its job.
   */
  whenPoisonFails?: "leave" | "terminate";
}

export interface WorkQueueConsumer {
  /** stop pulls no more, lets in-flight handlers finish (and ack), then resolves. */
  stop(): Promise<void>;
}

interface ConsumerLimits {
  ackWaitMs: number;
  maxDeliver: number;
}

/**
 * consumeWorkQueue runs handler for messages of a durable pull consumer.
 * It pulls only as many messages as it has free handler slots, so what it
 * holds is what it works on and other processes get the rest; the consumer's
 * max_ack_pending bounds the total across processes. Each handler runs in a
 * "process <subject>" span continuing the publisher's trace. Success acks;
 * a throw naks with backoff, and on the last allowed delivery (the consumer's
 * max_deliver, read from the server so it cannot disagree) onPoison gets the
 * message and it is terminated. While a handler runs, the message's ack
 * timer is reset every ack_wait/2. Pull errors (NATS restarting, the stream
 * not there yet) are logged and retried; a closed connection ends the loop.
 */
export function consumeWorkQueue(
  nats: Pick<NatsDeps, "nc" | "js">,
  spec: WorkQueueConsumerSpec,
  handler: WorkHandler,
  onPoison: PoisonHandler,
): WorkQueueConsumer {
  if (!Number.isInteger(spec.concurrency) || spec.concurrency < 1) {
    throw new Error(`concurrency must be a positive integer, not ${spec.concurrency}`);
  }
  const { log, stream, durable } = spec;
  const { js, nc } = nats;
  const backoff = spec.retryBackoff ?? { initialMs: 1_000, maxMs: 60_000 };
  const expires = Math.max(spec.pullExpiresMs ?? 10_000, 1_000);
  const inflight = new Set<Promise<void>>();
  const stopping = new AbortController();
  let batch: ConsumerMessages | undefined;
  let wake: (() => void) | undefined;

  const handling = taskFailures(log, "work queue handler", { fields: { stream, durable } });
  const retryDelay = (deliveryCount: number): number => {
    const full = Math.min(backoff.maxMs, backoff.initialMs * 2 ** Math.min(deliveryCount - 1, 30));
    return Math.round(full / 2 + (Math.random() * full) / 2);
  };

  async function settle(m: JsMsg, limits: ConsumerLimits): Promise<void> {
    const msg: WorkMessage = {
      subject: m.subject,
      data: m.data,
      headers: headerRecord(m.headers),
      deliveryCount: m.info.deliveryCount,
      seq: m.seq,
      deliveriesLeft: limits.maxDeliver > 0 ? limits.maxDeliver - m.info.deliveryCount : Number.POSITIVE_INFINITY,
    };
    const fields = { stream, durable, subject: msg.subject, seq: msg.seq, deliveryCount: msg.deliveryCount };
    const parent = propagation.extract(ROOT_CONTEXT, msg.headers);
    // Named after the stream: subjects carry ids, and a span name per id would be an operation each.
    const span = tracer.startSpan(
      `process ${stream}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "nats",
          "messaging.operation.type": "process",
          "messaging.destination.name": msg.subject,
          "messaging.consumer.group.name": durable,
          "messaging.message.id": msg.headers["Nats-Msg-Id"] ?? "",
          "messaging.message.body.size": msg.data.byteLength,
          "stockroom.nats.stream": stream,
          "stockroom.nats.stream_sequence": msg.seq,
          "stockroom.nats.delivery_count": msg.deliveryCount,
        },
      },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    try {
      const failure = await runHandler(m, limits, () => context.with(ctx, () => handler(msg)));
      if (failure !== undefined && "pass" in failure) {
        span.setAttribute("stockroom.nats.passed", failure.pass.reason);
        m.nak(failure.pass.delayMs);
        log.info("message passed on; it will be offered again", { ...fields, ...failure.pass });
        return;
      }
      if (failure === undefined) {
        handling.succeeded();
        await m.ackAck().catch((error: unknown) => {
          log.warn("ack not confirmed; the message may be redelivered", { ...fields, error });
        });
        return;
      }
      const { error } = failure;
      span.recordException(error instanceof Error ? error : String(error));
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
      if (limits.maxDeliver > 0 && msg.deliveryCount >= limits.maxDeliver) {
        await poison(m, msg, error, ctx, fields);
      } else {
        const delayMs = retryDelay(msg.deliveryCount);
        m.nak(delayMs);
        // An outage fails every message: its first failure is logged, not one line per message.
        if (unavailableBackend(error)) handling.failed(error, { ...fields, delayMs });
        else log.warn("message failed; it will be redelivered", { ...fields, delayMs, error });
      }
    } catch (error) {
      // Only settling itself (nak, term on a closed connection) gets here; ack_wait redelivers.
      log.error("could not settle message", { ...fields, error });
    } finally {
      span.end();
    }
  }

  async function poison(m: JsMsg, msg: WorkMessage, error: unknown, ctx: Context, fields: Record<string, unknown>): Promise<void> {
    try {
      await context.with(ctx, () => onPoison(msg, error));
    } catch (poisonError) {
      if (spec.whenPoisonFails === "terminate") {
        m.term();
        log.error("poison handler failed; message terminated, to be re-published from the source of truth", {
          ...fields,
          error,
          poisonError,
        });
        return;
      }
      // Not terminated: the message stays in the stream for an operator to inspect.
      log.error("poison handler failed; message left unacknowledged in the stream", {
        ...fields,
        error,
        poisonError,
      });
      return;
    }
    // term() without a reason: servers before 2.11 ignore "+TERM <reason>".
    m.term();
    log.warn("message failed on its last delivery; terminated", { ...fields, error });
  }

  // A pull that failed while NATS was away is tried again as soon as the connection is back, not when its backoff ends.
  let reconnected = new AbortController();
  const statuses = nc.status();
  void (async () => {
    for await (const s of statuses) {
      if (s.type !== "reconnect") continue;
      reconnected.abort();
      reconnected = new AbortController();
    }
  })();

  async function loop(): Promise<void> {
    let consumer: Consumer | undefined;
    let limits: ConsumerLimits = { ackWaitMs: 30_000, maxDeliver: -1 };
    const pulls = taskFailures(log, "work queue pull", { fields: { stream, durable }, maxDelayMs: 30_000 });
    while (!stopping.signal.aborted) {
      try {
        if (!consumer) {
          consumer = await js.consumers.get(stream, durable);
          const { config } = await consumer.info(true);
          limits = { ackWaitMs: millis(config.ack_wait ?? nanos(30_000)), maxDeliver: config.max_deliver ?? -1 };
        }
        const free = spec.concurrency - inflight.size;
        if (free <= 0) {
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        batch = await consumer.fetch({ max_messages: free, expires });
        if (stopping.signal.aborted) batch.stop();
        for await (const m of batch) {
          if (stopping.signal.aborted) {
            m.nak(); // received while stopping: hand it straight to another worker
            continue;
          }
          const p: Promise<void> = settle(m, limits).finally(() => {
            inflight.delete(p);
            wake?.();
          });
          inflight.add(p);
        }
        pulls.succeeded();
      } catch (error) {
        if (stopping.signal.aborted) break;
        if (error instanceof errors.ClosedConnectionError || error instanceof errors.DrainingConnectionError) {
          log.error("nats connection closed; work queue consumer ended", { stream, durable });
          break;
        }
        consumer = undefined; // look it up again: it may have been recreated with new limits
        pulls.failed(error);
        await pause(pulls.delayMs(500), AbortSignal.any([stopping.signal, reconnected.signal]));
      } finally {
        batch = undefined;
      }
    }
  }

  const running = loop();
  return {
    async stop() {
      stopping.abort();
      // The connection outlives its consumers: this one's status listener goes with it (status() returns NATS's stoppable iterator).
      (statuses as Partial<{ stop(): void }>).stop?.();
      batch?.stop();
      wake?.();
      await running;
      await Promise.all([...inflight]);
    },
  };
}

/**
 * runHandler runs fn, telling the server every ack_wait/2 that the message
 * is still being worked on; it returns the thrown error, if any.
 */
async function runHandler(
  m: JsMsg,
  limits: ConsumerLimits,
  // biome-ignore lint/suspicious/noConfusingVoidType: as WorkHandler
  fn: () => Promise<void | Pass>,
): Promise<{ error: unknown } | Pass | undefined> {
  const keepAlive = setInterval(() => m.working(), Math.max(limits.ackWaitMs / 2, 50));
  try {
    return (await fn()) ?? undefined;
  } catch (error) {
    return { error };
  } finally {
    clearInterval(keepAlive);
  }
}

function headerRecord(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

export interface ConsumerLag {
  /** Messages not yet delivered to any worker. */
  pending: number;
  /** Delivered and not yet acknowledged (in flight or awaiting redelivery). */
  ackPending: number;
  /** Messages delivered more than once. */
  redelivered: number;
  /** Pull requests waiting for messages (idle worker capacity). */
  waiting: number;
}

/** consumerLag reads the consumer's counters for queue-lag metrics and health pages. */
export async function consumerLag(jsm: JetStreamManager, stream: string, durable: string): Promise<ConsumerLag> {
  const ci = await jsm.consumers.info(stream, durable);
  return {
    pending: ci.num_pending,
    ackPending: ci.num_ack_pending,
    redelivered: ci.num_redelivered,
    waiting: ci.num_waiting,
  };
}
