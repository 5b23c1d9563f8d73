import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  CancelOrderRequestSchema,
  CancelOrderResponseSchema,
  CreateOrderRequestSchema,
  CreateOrderResponseSchema,
  FulfillOrderRequestSchema,
  FulfillOrderResponseSchema,
  type OrderService,
} from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import {
  principalOf,
  type Principal,
  idempotentMutation,
  type IdempotentCall,
  decodePageToken,
  encodePageToken,
  pageSize,
  type RateLimiter,
} from "@stockroom/common/rpc";
import { inTransaction } from "@stockroom/common/db";
import {
  InvalidArgumentError,
  NotFoundError,
  PreconditionError,
  type FieldViolation,
  ULID_PATTERN,
  checkEtag,
  longerThan,
  createWatchHub,
} from "@stockroom/common";
import type { OrderOutcome } from "./metrics.ts";
import { isFinal, LIMITS, paidBetween, validateOrderRequest, type Order } from "./domain.ts";
import { orderToProto, stateFilterFromProto } from "./convert.ts";
import { cancelOrder, fulfillOrder, payOrder, placeOrder, type OrderActor } from "./lifecycle.ts";
import type { RequestedLine } from "./domain.ts";
import type { Bulkhead } from "./bulkhead.ts";
import { createReservations, type CreateOrderCall, type Reservations } from "./reservations.ts";
import { findOrder, findOrderVersions, listOrders, type OrderDb, type OrderRef, type OrderTx } from "./store.ts";

export interface OrderServiceDeps {
  db: OrderDb;
  /** How long an unpaid order holds its stock. */
  reservationTtlMs: number;
  /** Admits each call of a merchant, or refuses it with RESOURCE_EXHAUSTED. */
  limiter: RateLimiter;
  /** How often WatchOrder looks for a change. */
  watchIntervalMs: number;
  /** Aborted when the process drains: open WatchOrder streams end instead of holding up the drain. */
  shutdown?: AbortSignal;
  /** Counts what happened to orders (stockroom_orders_total). */
  count?: (outcome: OrderOutcome) => void;
  /** Caps each merchant's order calls in flight (bulkhead.ts). */
  bulkhead: Bulkhead;
  /** Caps the orders of one SKU waiting for a batch (reservations.ts; 0: no cap). */
  maxWaitingPerSku: number;
  /** Caps a merchant's single-line orders under way by the time its answer rate takes to clear them (reservations.ts; 0: no cap). */
  queueMs: number;
  /** The most single-line orders of one SKU sharing a transaction (reservations.ts). */
  maxBatch: number;
  /** How long committed knowledge of a SKU's stock refuses orders without a read (reservations.ts). */
  soldOutTrustMs: number;
}

/**
 * createOrderService implements stockroom.order.v1.OrderService. Every call
 * first spends a token of its merchant's rate limit, so an over-eager
 * merchant is shed before it reaches the database; every valid mutation
 * then takes a place in its merchant's bulkhead (bulkhead.ts) for as long
 * as it is in flight, so a merchant with slow calls is shed before it fills
 * the pool. Single-line orders are batched per SKU (reservations.ts).
 */
export function createOrderService(deps: OrderServiceDeps): {
  service: ServiceImpl<typeof OrderService>;
  /** The refusal a CreateOrder of the merchant's would get from its reservations' load now (early shedding; reservations.ts). */
  overloaded: Reservations["overloaded"];
} {
  const { db } = deps;
  const admit = (ctx: HandlerContext): Principal => {
    const principal = principalOf(ctx);
    deps.limiter.take(principal.merchantId);
    return principal;
  };
  /** inFlight runs a mutation holding a place of its merchant's bulkhead. */
  const inFlight = async <T>(principal: Principal, run: () => Promise<T>): Promise<T> => {
    const release = await deps.bulkhead.enter(principal.merchantId);
    try {
      return await run();
    } finally {
      release();
    }
  };
  /** placeAlone places an order in a transaction of its own (multi-line orders; replays and fallbacks of batched ones). */
  const placeAlone = (who: OrderActor, call: CreateOrderCall, lines: RequestedLine[], buyerReference: string) =>
    idempotentMutation(db, call, async (trx) => ({
      order: orderToProto(await placeOrder(trx, who, { lines, buyerReference }, deps.reservationTtlMs, new Date())),
    }));
  const reservations = createReservations({
    db,
    reservationTtlMs: deps.reservationTtlMs,
    maxBatch: deps.maxBatch,
    soldOutTrustMs: deps.soldOutTrustMs,
    bulkhead: deps.bulkhead,
    maxWaiting: deps.maxWaitingPerSku,
    queueMs: deps.queueMs,
    single: (r) => placeAlone(r.who, r.call, [r.line], r.buyerReference),
  });
  // One poller for every open WatchOrder of the process: each look reads the versions of a merchant's watched orders at once.
  const watches = createWatchHub<number>({
    read: (merchantId, orderIds) => findOrderVersions(db, merchantId, orderIds),
    versionOf: (version) => version,
    gone: (orderId) => new NotFoundError("order", orderId),
    intervalMs: deps.watchIntervalMs,
  });
  const load = async (ref: OrderRef): Promise<Order> => {
    const order = await findOrder(db, ref);
    if (!order) throw new NotFoundError("order", ref.orderId);
    return order;
  };

  const service: ServiceImpl<typeof OrderService> = {
    async createOrder(req, ctx) {
      const principal = admit(ctx);
      const lines = req.lines.map((l) => ({ sku: l.sku, quantity: l.quantity }));
      const violations: FieldViolation[] = [];
      validateOrderRequest({ requestId: req.requestId, lines, buyerReference: req.buyerReference }, violations);
      rejectViolations(violations);

      const call: CreateOrderCall = {
        merchantId: principal.merchantId,
        method: "OrderService.CreateOrder",
        requestId: req.requestId,
        requestSchema: CreateOrderRequestSchema,
        request: req,
        responseSchema: CreateOrderResponseSchema,
      };
      try {
        const who: OrderActor = { merchantId: principal.merchantId, actor: principal.actor, requestId: req.requestId };
        // A batch takes its bulkhead place itself: one for all the orders it carries.
        const placed =
          lines.length === 1
            ? await reservations.reserve({ who, call, line: lines[0]!, buyerReference: req.buyerReference })
            : await inFlight(principal, () => placeAlone(who, call, lines, req.buyerReference));
        deps.count?.("placed");
        return placed;
      } catch (error) {
        if (error instanceof PreconditionError && error.reason === "INSUFFICIENT_STOCK") deps.count?.("out_of_stock");
        throw error;
      }
    },

    async getOrder(req, ctx) {
      const { merchantId } = admit(ctx);
      rejectViolations(checkOrderId(req.orderId, []));
      return { order: orderToProto(await load({ merchantId, orderId: req.orderId })) };
    },

    async listOrders(req, ctx) {
      const { merchantId } = admit(ctx);
      const state = stateFilterFromProto(req.state);
      const limit = pageSize(req.pageSize, 100, 1000);
      const filters = { state };
      const position = decodePageToken(req.pageToken, filters);
      const orders = await listOrders(db, merchantId, { state, beforeOrderId: position && String(position[0]), limit: limit + 1 });
      const page = orders.slice(0, limit);
      return {
        orders: page.map(orderToProto),
        nextPageToken: orders.length > limit ? encodePageToken([page.at(-1)!.id], filters) : "",
      };
    },

    async markOrderPaid(req, ctx) {
      const principal = admit(ctx);
      const violations = checkOrderId(req.orderId, []);
      if (req.paymentId === "") violations.push({ field: "payment_id", description: "is required" });
      else if (longerThan(req.paymentId, LIMITS.paymentId)) {
        violations.push({ field: "payment_id", description: `must be at most ${LIMITS.paymentId} characters` });
      }
      rejectViolations(violations);
      // Idempotent by payment_id (see payOrder), so no request_id is needed.
      const who: OrderActor = { merchantId: principal.merchantId, actor: principal.actor };
      const order = await inFlight(principal, () => inTransaction(db, (trx) => payOrder(trx, who, req.orderId, req.paymentId, new Date())));
      deps.count?.("paid");
      return { order: orderToProto(order) };
    },

    async fulfillOrder(req, ctx) {
      const principal = admit(ctx);
      const violations = checkOrderId(req.orderId, []);
      const etag = checkEtag("etag", req.etag, violations);
      rejectViolations(violations);
      const call = {
        method: "OrderService.FulfillOrder",
        requestId: req.requestId,
        requestSchema: FulfillOrderRequestSchema,
        request: req,
        responseSchema: FulfillOrderResponseSchema,
      };
      const fulfilled = await inFlight(principal, () =>
        mutate(db, principal, call, async (trx, who) => ({
          order: orderToProto(await fulfillOrder(trx, who, req.orderId, etag, new Date())),
        })),
      );
      deps.count?.("fulfilled");
      return fulfilled;
    },

    async cancelOrder(req, ctx) {
      const principal = admit(ctx);
      const violations = checkOrderId(req.orderId, []);
      const etag = checkEtag("etag", req.etag, violations);
      if (longerThan(req.reason, LIMITS.cancelReason)) {
        violations.push({ field: "reason", description: `must be at most ${LIMITS.cancelReason} characters` });
      }
      rejectViolations(violations);
      const call = {
        method: "OrderService.CancelOrder",
        requestId: req.requestId,
        requestSchema: CancelOrderRequestSchema,
        request: req,
        responseSchema: CancelOrderResponseSchema,
      };
      const cancelled = await inFlight(principal, () =>
        mutate(db, principal, call, async (trx, who) => ({
          order: orderToProto(await cancelOrder(trx, who, req.orderId, { reason: req.reason, etag }, new Date())),
        })),
      );
      // The stock came back: what this process knew of those SKUs is stale.
      reservations.restocked(
        principal.merchantId,
        (cancelled.order?.lines ?? []).map((l) => l.sku),
      );
      deps.count?.("cancelled");
      return cancelled;
    },

    async *watchOrder(req, ctx) {
      const { merchantId } = admit(ctx);
      rejectViolations(checkOrderId(req.orderId, []));
      const signal = deps.shutdown ? AbortSignal.any([ctx.signal, deps.shutdown]) : ctx.signal;
      const ref = { merchantId, orderId: req.orderId };
      let order = await load(ref);
      // What the caller saw last: on a watch opened again, its since_version (only version 1 is unpaid).
      let seen: Order | undefined =
        req.sinceVersion === 1n ? { ...order, state: "pending_payment", version: 1, cancelReason: "" } : undefined;
      for (;;) {
        const passed = seen && paidBetween(seen, order);
        if (passed) yield { order: orderToProto(passed) };
        yield { order: orderToProto(order) };
        if (isFinal(order.state)) return;
        if ((await watches.changed(merchantId, ref.orderId, order.version, signal)) === undefined) return;
        seen = order;
        order = await load(ref);
      }
    },
  };
  return { service, overloaded: reservations.overloaded };
}

/** mutate runs one order mutation (idempotentMutation) as the caller's principal. */
function mutate<Req extends DescMessage, Res extends DescMessage>(
  db: OrderDb,
  principal: Principal,
  call: Omit<IdempotentCall<Req, Res>, "merchantId">,
  run: (trx: OrderTx, who: OrderActor) => Promise<MessageInitShape<Res>>,
): Promise<MessageShape<Res>> {
  const who: OrderActor = { merchantId: principal.merchantId, actor: principal.actor, requestId: call.requestId };
  return idempotentMutation(db, { ...call, merchantId: principal.merchantId }, (trx) => run(trx, who));
}

function checkOrderId(orderId: string, violations: FieldViolation[]): FieldViolation[] {
  if (orderId === "") violations.push({ field: "order_id", description: "is required" });
  else if (!ULID_PATTERN.test(orderId)) violations.push({ field: "order_id", description: "is not an order id" });
  return violations;
}

function rejectViolations(violations: FieldViolation[]): void {
  if (violations.length > 0) throw new InvalidArgumentError(violations);
}
