/** The orders package's Prometheus series, added to the process's registry by the orders module and the sweeper. */
import { Counter, type Registry } from "prom-client";

/** OrderOutcome names what happened to an order. */
export type OrderOutcome = "placed" | "out_of_stock" | "paid" | "fulfilled" | "cancelled" | "expired";

const byRegistry = new WeakMap<Registry, Counter<"outcome">>();

/** orderOutcomes returns the orders counter of a registry, adding it the first time (the API and the sweeper share one). */
export function orderOutcomes(registry: Registry): Counter<"outcome"> {
  let counter = byRegistry.get(registry);
  if (!counter) {
    counter = new Counter({
      name: "stockroom_orders_total",
      help: "Orders by outcome: placed, out_of_stock, paid, fulfilled, cancelled, expired.",
      labelNames: ["outcome"],
      registers: [registry],
    });
    byRegistry.set(registry, counter);
  }
  return counter;
}
