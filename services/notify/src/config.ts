import { readInt, type Env } from "@stockroom/common";

/** DispatcherConfig tunes webhook delivery; parseNotifyConfig reads it from WEBHOOK_* settings. */
export interface DispatcherConfig {
  /** The durable consumer on the event stream that every dispatcher process shares. */
  durable: string;
  /** Events this process turns into deliveries at once. */
  intakeConcurrency: number;
  /** Events handed out and not yet recorded, across all processes. */
  maxAckPending: number;
  /** How long an event may take to be recorded before JetStream offers it again. */
  ackWaitMs: number;
  /** HTTP requests in flight in this process: the global pool. */
  concurrency: number;
  /** HTTP requests in flight to one endpoint from this process, so a slow endpoint holds at most this many of the pool. */
  perEndpointConcurrency: number;
  /** One attempt's limit, connect to last byte. */
  requestTimeoutMs: number;
  /** Backoff before retry n is uniformly random in [0, min(retryMaxMs, retryMinMs·2^(n-1))] (full jitter). */
  retryMinMs: number;
  retryMaxMs: number;
  /** A delivery still failing this long after it was created (or replayed) becomes a dead letter. */
  maxAgeMs: number;
  /** Failures in a row after which an endpoint is paused (its circuit opens); then one probe at a time. */
  circuitAfterFailures: number;
  /** The pause doubles per further failure, from retryMinMs up to this. */
  circuitMaxMs: number;
  /** How often an idle dispatcher looks for due deliveries (new events wake it at once in-process). */
  pollMs: number;
  /** Delivered rows are kept this long (the window in which a redelivered event is still recognized), dead letters 4× as long. */
  retentionMs: number;
  /** How often expired deliveries of paused endpoints become dead letters and rows past retention are deleted; 0 = never. */
  sweepEveryMs: number;
}

/** NotifyConfig is the webhook settings of an API or dispatcher process. */
export interface NotifyConfig {
  /**
   * Whether endpoints may point at loopback, private, link-local or other
   * non-public addresses (WEBHOOK_ALLOW_PRIVATE_TARGETS). Off by default, so
   * merchants cannot make the servers call internal services; `npm start`
   * turns it on for local receivers.
   */
  allowPrivateTargets: boolean;
  dispatcher: DispatcherConfig;
}

export const DEFAULT_DISPATCHER: DispatcherConfig = {
  durable: "webhooks",
  intakeConcurrency: 16,
  maxAckPending: 1024,
  ackWaitMs: 30_000,
  concurrency: 64,
  perEndpointConcurrency: 4,
  requestTimeoutMs: 10_000,
  retryMinMs: 1_000,
  retryMaxMs: 3_600_000,
  maxAgeMs: 24 * 3_600_000,
  circuitAfterFailures: 5,
  circuitMaxMs: 10 * 60_000,
  pollMs: 500,
  retentionMs: 7 * 24 * 3_600_000,
  sweepEveryMs: 5 * 60_000,
};

export function parseNotifyConfig(env: Env): NotifyConfig {
  const allow = env["WEBHOOK_ALLOW_PRIVATE_TARGETS"] || "false";
  if (allow !== "true" && allow !== "false") {
    throw new Error(`WEBHOOK_ALLOW_PRIVATE_TARGETS must be true or false, not "${allow}"`);
  }
  const d = DEFAULT_DISPATCHER;
  const hour = 3_600_000;
  const dispatcher: DispatcherConfig = {
    durable: env["WEBHOOK_CONSUMER"] || d.durable,
    intakeConcurrency: readInt(env, "WEBHOOK_INTAKE_CONCURRENCY", d.intakeConcurrency, 1, 1000),
    maxAckPending: readInt(env, "WEBHOOK_MAX_ACK_PENDING", d.maxAckPending, 1, 100_000),
    ackWaitMs: readInt(env, "WEBHOOK_ACK_WAIT_MS", d.ackWaitMs, 1000, hour),
    concurrency: readInt(env, "WEBHOOK_CONCURRENCY", d.concurrency, 1, 10_000),
    perEndpointConcurrency: readInt(env, "WEBHOOK_ENDPOINT_CONCURRENCY", d.perEndpointConcurrency, 1, 1000),
    requestTimeoutMs: readInt(env, "WEBHOOK_TIMEOUT_MS", d.requestTimeoutMs, 100, 120_000),
    retryMinMs: readInt(env, "WEBHOOK_RETRY_MIN_MS", d.retryMinMs, 1, hour),
    retryMaxMs: readInt(env, "WEBHOOK_RETRY_MAX_MS", d.retryMaxMs, 1, 24 * hour),
    maxAgeMs: readInt(env, "WEBHOOK_MAX_AGE_MS", d.maxAgeMs, 1, 30 * 24 * hour),
    circuitAfterFailures: readInt(env, "WEBHOOK_CIRCUIT_AFTER_FAILURES", d.circuitAfterFailures, 1, 1000),
    circuitMaxMs: readInt(env, "WEBHOOK_CIRCUIT_MAX_MS", d.circuitMaxMs, 1, 24 * hour),
    pollMs: readInt(env, "WEBHOOK_POLL_MS", d.pollMs, 10, 60_000),
    retentionMs: readInt(env, "WEBHOOK_RETENTION_MS", d.retentionMs, 60_000, 365 * 24 * hour),
    sweepEveryMs: readInt(env, "WEBHOOK_SWEEP_EVERY_MS", d.sweepEveryMs, 0, 24 * hour),
  };
  if (dispatcher.retryMaxMs < dispatcher.retryMinMs) {
    throw new Error(`WEBHOOK_RETRY_MAX_MS (${dispatcher.retryMaxMs}) must not be below WEBHOOK_RETRY_MIN_MS (${dispatcher.retryMinMs})`);
  }
  return { allowPrivateTargets: allow === "true", dispatcher };
}
