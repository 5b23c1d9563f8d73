/**
 * The webhook dispatcher's Prometheus series (stockroom_webhook_*), added to
 * the process's registry (common's createMetrics) by the process that runs a
 * dispatcher. The names, help and labels are what tools/observability's
 * alerts and dashboard read.
 */
import { counterOf } from "@stockroom/common/observe";
import { Gauge, type Registry } from "prom-client";

/** DispatcherStatsLike is what registerDispatcherMetrics reads of the webhook dispatcher's stats() (dispatcher.ts). */
export interface DispatcherStatsLike {
  delivered: number;
  /** Failed attempts, retried or not. */
  failed: number;
  /** Deliveries given up into the dead-letter list. */
  dead: number;
  inflight: number;
}

/** registerDispatcherMetrics exports a webhook dispatcher's stats() (stockroom_webhook_*) in the process running it. */
export function registerDispatcherMetrics(registry: Registry, dispatcher: { stats(): DispatcherStatsLike }): void {
  // Registered here: only a process running the dispatcher exports these.
  const registers = [registry];
  counterOf(
    registers,
    "stockroom_webhook_deliveries_total",
    "Webhook deliveries that reached their endpoint.",
    () => dispatcher.stats().delivered,
  );
  counterOf(
    registers,
    "stockroom_webhook_failed_attempts_total",
    "Webhook attempts that failed (each is retried until the delivery expires).",
    () => dispatcher.stats().failed,
  );
  counterOf(
    registers,
    "stockroom_webhook_dead_letters_total",
    "Webhook deliveries given up into the merchant's dead-letter list.",
    () => dispatcher.stats().dead,
  );
  new Gauge({
    name: "stockroom_webhook_inflight_requests",
    help: "Webhook requests this process has in flight.",
    registers,
    collect() {
      this.set(dispatcher.stats().inflight);
    },
  });
}
