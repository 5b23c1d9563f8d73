import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { type ServiceModule, createRateLimiter, type RateLimit } from "@stockroom/common/rpc";
import { eventsMigrations, registerOutboxMetrics } from "@stockroom/events";
import type { Metrics } from "@stockroom/common/observe";
import { parseOrderConfig } from "./config.ts";
import { createBulkhead, type BulkheadLimits } from "./bulkhead.ts";
import { createOrderService } from "./rpc.ts";
import { orderMigrations, type OrderDb } from "./store.ts";
import { orderOutcomes } from "./metrics.ts";

/** The path of CreateOrder, the call an order spike is made of. */
const CREATE_ORDER_PATH = `/${OrderService.typeName}/${OrderService.method.createOrder.name}`;

export interface OrdersModuleOptions {
  reservationTtlMs?: number;
  rateLimit?: RateLimit;
  watchIntervalMs?: number;
  bulkhead?: BulkheadLimits;
  maxBatch?: number;
  soldOutTrustMs?: number;
  /** Aborted when the process drains, to end open WatchOrder streams. */
  shutdown?: AbortSignal;
  /** The process's metrics: orders are counted by outcome. */
  metrics?: Pick<Metrics, "registry">;
}

/**
 * ordersModule plugs OrderService into an API process; unset options take
 * parseOrderConfig's defaults. It needs the catalog's tables as well (a
 * process serving the catalog too, or tools/migrate.ts, applies them).
 */
export function ordersModule(db: OrderDb, options: OrdersModuleOptions = {}): ServiceModule {
  const defaults = parseOrderConfig({});
  const limits = options.bulkhead ?? defaults.bulkhead;
  const bulkhead = createBulkhead(limits);
  const { service, overloaded } = createOrderService({
    db,
    reservationTtlMs: options.reservationTtlMs ?? defaults.reservationTtlMs,
    limiter: createRateLimiter(options.rateLimit ?? defaults.rateLimit),
    watchIntervalMs: options.watchIntervalMs ?? defaults.watchIntervalMs,
    bulkhead,
    maxWaitingPerSku: limits.waitingPerSku,
    queueMs: limits.queueMs,
    maxBatch: options.maxBatch ?? defaults.maxBatch,
    soldOutTrustMs: options.soldOutTrustMs ?? defaults.soldOutTrustMs,
    shutdown: options.shutdown,
    count: options.metrics && ((outcome) => orderOutcomes(options.metrics!.registry).inc({ outcome })),
  });
  return {
    services: [OrderService],
    migrations: [orderMigrations, eventsMigrations],
    register: (router) => router.service(OrderService, service),
    // A merchant whose places are all taken, with none expected soon, whose orders under way are past their
    // budget, or whose shared transactions' line is full, has its new orders refused before decoding: in a spike
    // most calls are refused, each for next to nothing.
    shed: (path, merchantId) => (path === CREATE_ORDER_PATH ? (bulkhead.overloaded(merchantId) ?? overloaded(merchantId)) : undefined),
    watch: (metrics) => {
      registerOutboxMetrics(metrics.registry, db);
      orderOutcomes(metrics.registry);
    },
  };
}
