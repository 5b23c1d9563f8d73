import test from "ava";
import { createMetrics } from "@stockroom/common/observe";
import { parsePrometheusText, sumOf } from "@stockroom/common/testing";
import { registerDispatcherMetrics } from "../src/metrics.ts";

test("a webhook dispatcher's deliveries, failed attempts, dead letters and in-flight requests are exported from its stats()", async (t) => {
  const metrics = createMetrics({ processMetrics: false });
  const dispatcher = { delivered: 7, failed: 3, dead: 0, inflight: 2 };
  registerDispatcherMetrics(metrics.registry, { stats: () => dispatcher });
  const read = async () => parsePrometheusText(await metrics.registry.metrics());
  let s = await read();
  t.is(sumOf(s, "stockroom_webhook_deliveries_total"), 7);
  t.is(sumOf(s, "stockroom_webhook_failed_attempts_total"), 3);
  t.is(sumOf(s, "stockroom_webhook_dead_letters_total"), 0);
  t.is(sumOf(s, "stockroom_webhook_inflight_requests"), 2);
  Object.assign(dispatcher, { failed: 5, dead: 1, inflight: 0 });
  s = await read();
  t.is(sumOf(s, "stockroom_webhook_dead_letters_total"), 1, "the alert's counter moves when a delivery is dead-lettered");
  t.is(sumOf(s, "stockroom_webhook_failed_attempts_total"), 5);
  t.is(sumOf(s, "stockroom_webhook_inflight_requests"), 0);
});

test("the series keep the names, types and help the alerts and dashboard were written against", async (t) => {
  const metrics = createMetrics({ processMetrics: false });
  registerDispatcherMetrics(metrics.registry, { stats: () => ({ delivered: 0, failed: 0, dead: 0, inflight: 0 }) });
  const text = await metrics.registry.metrics();
  const declared = (name: string) => text.split("\n").filter((l) => l.startsWith(`# HELP ${name} `) || l.startsWith(`# TYPE ${name} `));
  t.deepEqual(declared("stockroom_webhook_deliveries_total"), [
    "# HELP stockroom_webhook_deliveries_total Webhook deliveries that reached their endpoint.",
    "# TYPE stockroom_webhook_deliveries_total counter",
  ]);
  t.deepEqual(declared("stockroom_webhook_failed_attempts_total"), [
    "# HELP stockroom_webhook_failed_attempts_total Webhook attempts that failed (each is retried until the delivery expires).",
    "# TYPE stockroom_webhook_failed_attempts_total counter",
  ]);
  t.deepEqual(declared("stockroom_webhook_dead_letters_total"), [
    "# HELP stockroom_webhook_dead_letters_total Webhook deliveries given up into the merchant's dead-letter list.",
    "# TYPE stockroom_webhook_dead_letters_total counter",
  ]);
  t.deepEqual(declared("stockroom_webhook_inflight_requests"), [
    "# HELP stockroom_webhook_inflight_requests Webhook requests this process has in flight.",
    "# TYPE stockroom_webhook_inflight_requests gauge",
  ]);
  t.false(/^stockroom_webhook_\w+\{/m.test(text), "no labels");
});
