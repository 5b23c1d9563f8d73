/**
 * The webhook dispatcher: an intake that records deliveries from the event
 * stream (intake.ts), and a delivery loop that sends them.
 *
 * Isolation: a process sends at most `concurrency` requests at once and at
 * most `perEndpointConcurrency` of them to one endpoint, so a slow endpoint
 * holds a few slots and every other endpoint's deliveries go out beside it.
 * An endpoint failing `circuitAfterFailures` times in a row is paused
 * (longer after each further failure) and then probed one delivery at a
 * time, so a dead endpoint's backlog is never retried in bulk. Each round
 * asks for the endpoints with due deliveries (oldest first) and claims a
 * few of each, rather than the oldest deliveries overall, which one
 * endpoint's backlog could fill.
 *
 * Any number of dispatcher processes may run: they share the durable
 * consumer, and claims skip rows another process holds. The per-endpoint
 * limit is per process.
 */
import { ensureEventConsumer, type EventStreamConfig } from "@stockroom/events";
import type { Logger } from "@stockroom/common/observe";
import { consumeWorkQueue, type NatsDeps } from "@stockroom/common/nats";
import { pause, taskFailures } from "@stockroom/common";
import type { DispatcherConfig } from "./config.ts";
import { claimDeliveries, dueEndpoints, settleDelivered, settleFailed, sweepDeliveries, type ClaimedDelivery } from "./deliveries.ts";
import { pauseMs, retryDelayMs } from "./domain.ts";
import { logDrop, recordEvent } from "./intake.ts";
import { createSender } from "./sender.ts";
import { SIGNATURE_HEADER, signatureHeader } from "./signature.ts";
import { previousSecretValid, type EndpointRow, type NotifyDb } from "./store.ts";

export interface DispatcherDeps {
  db: NotifyDb;
  nats: NatsDeps;
  events: EventStreamConfig;
  config: DispatcherConfig;
  /** See NotifyConfig.allowPrivateTargets. */
  allowPrivateTargets: boolean;
  log: Logger;
}

export interface DispatcherStats {
  /** Events recorded (with or without matching endpoints). */
  events: number;
  /** Delivery rows written. */
  recorded: number;
  delivered: number;
  /** Failed attempts (retried or dead). */
  failed: number;
  dead: number;
  /** Requests in flight now. */
  inflight: number;
}

export interface WebhookDispatcher {
  stats(): DispatcherStats;
  /** stop takes no more events, lets in-flight requests finish and resolves. */
  stop(): Promise<void>;
}

/** A paused endpoint is looked at again after at most this long (a replay may have lifted the pause). */
const PAUSE_RECHECK_MS = 1_000;

/** startWebhookDispatcher makes sure the event stream and the consumer exist, then records and sends until stopped. */
export async function startWebhookDispatcher(deps: DispatcherDeps): Promise<WebhookDispatcher> {
  const { db, nats, events, config, log } = deps;
  await ensureEventConsumer(nats.jsm, events, {
    durable: config.durable,
    ackWaitMs: config.ackWaitMs,
    maxAckPending: config.maxAckPending,
  });
  const sender = createSender({
    timeoutMs: config.requestTimeoutMs,
    allowPrivateTargets: deps.allowPrivateTargets,
    maxSockets: config.concurrency,
  });
  // A claim outlives the request by a margin, so a slow answer is never sent twice.
  const leaseMs = config.requestTimeoutMs * 2 + 5_000;
  const stats = { events: 0, recorded: 0, delivered: 0, failed: 0, dead: 0 };
  const stopping = new AbortController();
  const inflight = new Map<string, number>();
  const sends = new Set<Promise<void>>();
  const pausedUntil = new Map<string, number>();
  let wake: (() => void) | undefined;
  let woken = false;
  const nudge = () => {
    woken = true;
    wake?.();
  };

  const intake = consumeWorkQueue(
    nats,
    {
      stream: events.stream,
      durable: config.durable,
      concurrency: config.intakeConcurrency,
      log,
      retryBackoff: { initialMs: 250, maxMs: 30_000 },
    },
    async (msg) => {
      const result = await recordEvent(db, msg, new Date(), config.maxAgeMs);
      stats.events++;
      if (result.dropped) logDrop(log, msg, result.dropped);
      if (result.deliveries > 0) {
        stats.recorded += result.deliveries;
        nudge();
      }
    },
    // Unreachable: ensureEventConsumer retries forever; kept to satisfy the consumer's contract.
    async (msg, error) => log.error("event given up by the webhook intake", { subject: msg.subject, error }),
  );

  async function send(endpoint: EndpointRow, d: ClaimedDelivery, key: string): Promise<void> {
    const secrets = previousSecretValid(endpoint, new Date()) ? [endpoint.secret, endpoint.previous_secret!] : [endpoint.secret];
    const outcome = await sender.post(endpoint.url, d.payload, {
      "user-agent": "stockroom-webhooks/1",
      [SIGNATURE_HEADER]: signatureHeader(d.payload, secrets),
      "Stockroom-Event-Id": d.event_id,
      "Stockroom-Event-Type": d.event_type,
      "Stockroom-Delivery-Id": d.delivery_id,
    });
    const done = new Date();
    if (outcome.ok) {
      await settleDelivered(db, d, outcome, done, endpoint.consecutive_failures > 0);
      pausedUntil.delete(key);
      stats.delivered++;
      return;
    }
    stats.failed++;
    const retryAt = new Date(done.getTime() + retryDelayMs(d.attempts, config.retryMinMs, config.retryMaxMs));
    if (retryAt > d.expires_at) stats.dead++;
    const paused = await settleFailed(db, d, outcome, done, retryAt, (failures) =>
      pauseMs(failures, { afterFailures: config.circuitAfterFailures, minMs: config.retryMinMs, maxMs: config.circuitMaxMs }),
    );
    if (paused) pausedUntil.set(key, paused.getTime());
  }

  function start(endpoint: EndpointRow, d: ClaimedDelivery, key: string): void {
    inflight.set(key, (inflight.get(key) ?? 0) + 1);
    const p: Promise<void> = send(endpoint, d, key)
      .catch((error: unknown) => {
        // The lease runs out and the delivery is tried again.
        log.error("webhook attempt not recorded", { deliveryId: d.delivery_id, error });
      })
      .finally(() => {
        const left = (inflight.get(key) ?? 1) - 1;
        if (left > 0) inflight.set(key, left);
        else inflight.delete(key);
        sends.delete(p);
        nudge();
      });
    sends.add(p);
  }

  /** round claims what this process has room for, endpoint by endpoint; it returns how many it started. */
  async function round(): Promise<number> {
    let started = 0;
    const now = new Date();
    for (const due of await dueEndpoints(db, now)) {
      const free = config.concurrency - sends.size;
      if (free <= 0 || stopping.signal.aborted) break;
      const key = `${due.merchantId}/${due.endpointId}`;
      if ((pausedUntil.get(key) ?? 0) > now.getTime()) continue;
      const busy = inflight.get(key) ?? 0;
      if (busy >= config.perEndpointConcurrency) continue;
      const claim = await claimDeliveries(
        db,
        due.merchantId,
        due.endpointId,
        (endpoint) => {
          const probing = endpoint.consecutive_failures >= config.circuitAfterFailures;
          return Math.min(free, (probing ? 1 : config.perEndpointConcurrency) - busy);
        },
        now,
        leaseMs,
      );
      if (claim.kind === "paused") {
        pausedUntil.set(key, Math.min(claim.until.getTime(), now.getTime() + PAUSE_RECHECK_MS));
      } else if (claim.kind === "claimed") {
        pausedUntil.delete(key);
        for (const d of claim.deliveries) start(claim.endpoint, d, key);
        started += claim.deliveries.length;
      }
      // "gone": DeleteWebhookEndpoint is removing the rows.
    }
    return started;
  }

  /** sweep runs the housekeeping beside the loop (it visits every endpoint; claims must not wait for it). */
  let sweeping: Promise<void> | undefined;
  const sweeps = taskFailures(log, "webhook sweep");
  function sweep(): void {
    if (sweeping) return;
    sweeping = sweepDeliveries(db, new Date(), config.circuitAfterFailures, {
      deliveredMs: config.retentionMs,
      deadMs: config.retentionMs * 4,
    })
      .then(
        (swept) => {
          stats.dead += swept.expired;
          sweeps.succeeded();
        },
        (error: unknown) => sweeps.failed(error),
      )
      .finally(() => (sweeping = undefined));
  }

  async function loop(): Promise<void> {
    let nextSweep = Date.now() + Math.min(config.sweepEveryMs, 60_000);
    // The database is down or failing over: back off (its first failure logged, not one line every poll) until it answers.
    const rounds = taskFailures(log, "webhook dispatch round");
    while (!stopping.signal.aborted) {
      woken = false;
      let started = 0;
      if (config.sweepEveryMs > 0 && Date.now() >= nextSweep) {
        nextSweep = Date.now() + config.sweepEveryMs;
        sweep();
      }
      try {
        if (sends.size < config.concurrency) started = await round();
        rounds.succeeded();
      } catch (error) {
        rounds.failed(error);
        await pause(rounds.delayMs(config.pollMs), stopping.signal);
        continue;
      }
      if (started > 0 && sends.size < config.concurrency) continue;
      if (woken) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, config.pollMs);
        stopping.signal.addEventListener("abort", done, { once: true });
        wake = done;
        function done() {
          clearTimeout(timer);
          stopping.signal.removeEventListener("abort", done);
          wake = undefined;
          resolve();
        }
      });
    }
  }

  const running = loop();
  return {
    stats: () => ({ ...stats, inflight: sends.size }),
    async stop() {
      stopping.abort();
      await intake.stop();
      await running;
      await Promise.all([...sends, sweeping]);
      sender.close();
    },
  };
}
