/**
 * The bodies of the order transactions: placing an order (reserving its
 * stock) and moving it through its states (returning the stock on cancel or
 * expiry). Each runs in the caller's transaction on one merchant's rows, so
 * the RPC handlers wrap them with idempotency and the sweeper calls
 * expireOrders as is.
 *
 * Lock order, the same in every transaction: the order row, then the
 * products in SKU order. Placing an order has no order row to lock yet, a
 * bulk chunk locks only products, and expiring takes its orders' rows SKIP
 * LOCKED (never waiting for one) before all their products in SKU order,
 * so no two of them can wait on each other in a cycle.
 */
import { EtagMismatchError, NotFoundError, PreconditionError, newUlid, etagMatches, etagOf } from "@stockroom/common";
import { ER_DUP_ENTRY, mysqlErrno } from "@stockroom/common/db";
import {
  type ChangeContext,
  LIMITS as PRODUCT_LIMITS,
  type Product,
  lockProduct,
  lockProducts,
  writeProducts,
  writeStockSeries,
  type ProductWrite,
  type StockMove,
} from "@stockroom/catalog";
import {
  checkTransition,
  priceLines,
  releasesStock,
  stateLabel,
  type Order,
  type OrderLine,
  type OrderState,
  type RequestedLine,
} from "./domain.ts";
import type { OrderEventName } from "./convert.ts";
import { recordOrderEvent, recordOrderEvents } from "./events.ts";
import { expireOrderRows, findOrder, findOrders, insertOrder, insertOrders, updateOrderRow, type OrderTx } from "./store.ts";

/** OrderActor is who drives a transaction, for the products' audit trail. */
export interface OrderActor {
  merchantId: string;
  /** e.g. "api_key:<key id>" or SWEEPER_ACTOR. */
  actor: string;
  requestId?: string;
}

/** SWEEPER_ACTOR is how the audit trail names the reservation sweeper. */
export const SWEEPER_ACTOR = "order_sweeper";

/**
 * placeOrder locks the lines' products, prices the lines from them, takes
 * the stock of every line (or throws, taking none), and writes the order in
 * PENDING_PAYMENT with its `order.created` event.
 */
export async function placeOrder(
  trx: OrderTx,
  who: OrderActor,
  request: { lines: RequestedLine[]; buyerReference: string },
  reservationTtlMs: number,
  at: Date,
): Promise<Order> {
  const products = await lockProducts(
    trx,
    who.merchantId,
    request.lines.map((l) => l.sku),
  );
  const order = newOrder(request.buyerReference, priceLines(request.lines, products), reservationTtlMs, at);
  await shiftStock(trx, who, order, products, "created", at);
  await insertOrder(trx, who.merchantId, order);
  await recordOrderEvent(trx, who.merchantId, "created", order, at);
  return order;
}

/** BatchedOrder is one single-line order of a hot-SKU batch (reservations.ts). */
export interface BatchedOrder {
  who: OrderActor;
  line: RequestedLine;
  buyerReference: string;
}

/**
 * BatchOutcome is what became of one order of a batch: placed, refused with
 * the error placeOrder would have thrown, or (busy) left undecided because
 * its product was locked elsewhere or missing when the batch skipped locked rows.
 */
export type BatchOutcome =
  | { order: Order; error?: undefined; busy?: undefined }
  | { order?: undefined; error: PreconditionError; busy?: undefined }
  | { order?: undefined; error?: undefined; busy: true };

/**
 * placeOrderBatch places single-line orders of ONE merchant in the caller's
 * transaction, as placeOrder would place them one after the other in that
 * order: their products are locked once, in SKU order and by one statement
 * (so two batches never take the same rows in opposite orders), each order
 * is decided against the stock the orders before it on its SKU left
 * (placed, or refused with placeOrder's error), and each product's stock
 * moves once by its sum (writeStockSeries), while every placed order keeps
 * its own product version, audit entry and event, its own order row and its
 * own `order.created` event. Returns the outcomes in the orders' order, and
 * each SKU's product as the batch leaves it (undefined if there is no such
 * product). With skipLocked it waits on no row: orders whose product another
 * transaction holds (or that has none) come back busy, undecided, for the
 * caller to place apart; `products` then holds only the rows it locked.
 * onLocked is shown the SKUs it locked (keys) as soon as it has them
 * (reservations.ts keeps a SKU's batches in their order at the row lock).
 */
export async function placeOrderBatch(
  trx: OrderTx,
  merchantId: string,
  batch: readonly BatchedOrder[],
  reservationTtlMs: number,
  at: Date,
  options: { skipLocked?: boolean; onLocked?: (locked: ReadonlyMap<string, unknown>) => void } = {},
): Promise<{ outcomes: BatchOutcome[]; products: Map<string, Product | undefined> }> {
  const skus = [...new Set(batch.map((b) => b.line.sku))];
  // Waiting locks: every SKU is known after (undefined: no product). Skipping: only the rows it locked.
  const locked = new Map<string, Product | undefined>(options.skipLocked ? [] : skus.map((sku) => [sku, undefined]));
  if (skus.length === 1 && !options.skipLocked) locked.set(skus[0]!, await lockProduct(trx, merchantId, skus[0]!));
  else for (const [sku, product] of await lockProducts(trx, merchantId, skus, { skipLocked: options.skipLocked })) locked.set(sku, product);
  options.onLocked?.(locked);
  const left = new Map(locked);
  /** The placed orders of each SKU, in arrival order. */
  const placed = new Map<string, { who: OrderActor; order: Order }[]>();
  const orders: Order[] = [];
  const outcomes = batch.map((b): BatchOutcome => {
    const { sku } = b.line;
    if (!locked.has(sku)) return { busy: true };
    const product = left.get(sku);
    let priced: ReturnType<typeof priceLines>;
    try {
      priced = priceLines([b.line], product ? new Map([[sku, product]]) : new Map());
    } catch (error) {
      if (error instanceof PreconditionError) return { error };
      throw error;
    }
    left.set(sku, { ...product!, stock: product!.stock - b.line.quantity });
    const order = newOrder(b.buyerReference, priced, reservationTtlMs, at);
    const ofSku = placed.get(sku);
    if (ofSku) ofSku.push({ who: b.who, order });
    else placed.set(sku, [{ who: b.who, order }]);
    orders.push(order);
    return { order };
  });
  const products = new Map(locked);
  const series = [...placed].map(([sku, ofSku]) => ({
    product: locked.get(sku)!,
    moves: ofSku.map(({ who, order }) => ({ ctx: stockContext(who, order, "created"), delta: -order.lines[0]!.quantity })),
  }));
  for (const [i, after] of (await writeStockSeries(trx, merchantId, series, at)).entries())
    products.set(series[i]!.product.sku, after.at(-1));
  if (orders.length > 0) {
    await insertOrders(trx, merchantId, orders);
    await recordOrderEvents(trx, merchantId, "created", orders, at);
  }
  return { outcomes, products };
}

/** newOrder is a priced order as it is placed: PENDING_PAYMENT, version 1, holding its stock for reservationTtlMs. */
function newOrder(buyerReference: string, priced: ReturnType<typeof priceLines>, reservationTtlMs: number, at: Date): Order {
  return {
    id: newUlid(at.getTime()),
    state: "pending_payment",
    buyerReference,
    ...priced,
    paymentId: null,
    cancelReason: "",
    version: 1,
    createdAt: at,
    updatedAt: at,
    expireAt: new Date(at.getTime() + reservationTtlMs),
    paidAt: null,
  };
}

/**
 * payOrder records the provider's payment. It is idempotent by payment_id:
 * an order already paid with the same id is returned as it is; with another
 * id it is FAILED_PRECONDITION (ALREADY_PAID), and so is a payment_id that
 * already paid another order (PAYMENT_ID_IN_USE).
 */
export async function payOrder(trx: OrderTx, who: OrderActor, orderId: string, paymentId: string, at: Date): Promise<Order> {
  const current = await lockOrder(trx, who.merchantId, orderId);
  if (current.paymentId !== null) {
    if (current.paymentId === paymentId) return current;
    throw new PreconditionError(
      "ALREADY_PAID",
      `order "${orderId}" was already paid with another payment_id`,
      { order_id: orderId, current_state: stateLabel(current.state) },
      [{ type: "ORDER_PAYMENT", subject: orderId, description: "the order was paid with another payment_id" }],
    );
  }
  try {
    return await transition(trx, who, current, "paid", { paymentId }, at);
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error;
    throw new PreconditionError("PAYMENT_ID_IN_USE", `payment_id "${paymentId}" already paid another order`, { payment_id: paymentId }, [
      { type: "PAYMENT_ID", subject: paymentId, description: "already paid another order" },
    ]);
  }
}

/** fulfillOrder marks a paid order as shipped. */
export async function fulfillOrder(trx: OrderTx, who: OrderActor, orderId: string, etag: string | undefined, at: Date): Promise<Order> {
  return transition(trx, who, await lockOrder(trx, who.merchantId, orderId, etag), "fulfilled", {}, at);
}

/** cancelOrder cancels an unfulfilled order and returns its stock. */
export async function cancelOrder(
  trx: OrderTx,
  who: OrderActor,
  orderId: string,
  change: { reason: string; etag: string | undefined },
  at: Date,
): Promise<Order> {
  const current = await lockOrder(trx, who.merchantId, orderId, change.etag);
  return transition(trx, who, current, "cancelled", { cancelReason: change.reason }, at);
}

/**
 * expireOrders expires those of a merchant's orders that are still unpaid
 * and due at `at`, in the caller's one transaction, and returns them. SKIP
 * LOCKED lets racing sweepers pass over an order another transaction holds
 * (another sweeper, or a payment arriving): the state check under the lock
 * is what makes the stock return exactly once. Set-based, as a hot SKU's
 * batch is placed: their products locked at once in SKU order, each
 * product's returns moved by their sum (writeStockSeries: every order keeps
 * its own audit entry and event, as shiftStock writes them one by one), the
 * orders moved to EXPIRED by one UPDATE and their events by one insert.
 */
export async function expireOrders(trx: OrderTx, merchantId: string, orderIds: readonly string[], at: Date): Promise<Order[]> {
  const due = (await findOrders(trx, merchantId, orderIds)).filter((o) => o.state === "pending_payment" && o.expireAt <= at);
  if (due.length === 0) return [];
  const products = await lockProducts(
    trx,
    merchantId,
    due.flatMap((o) => o.lines.map((l) => l.sku)),
  );
  const who: OrderActor = { merchantId, actor: SWEEPER_ACTOR };
  const series = new Map<string, { product: Product; moves: StockMove[] }>();
  /** The stock each product will have after the returns so far: a return never lifts it above the catalog's maximum. */
  const stock = new Map([...products].map(([sku, p]) => [sku, p.stock]));
  for (const order of due) {
    for (const line of order.lines) {
      const product = orderedProduct(line, products);
      if (!product) continue;
      const delta = stockBack(line, stock.get(line.sku)!);
      stock.set(line.sku, stock.get(line.sku)! + delta);
      const moves = series.get(line.sku)?.moves ?? [];
      if (moves.length === 0) series.set(line.sku, { product, moves });
      moves.push({ ctx: stockContext(who, order, "expired"), delta });
    }
  }
  await writeStockSeries(trx, merchantId, [...series.values()], at);
  const expired = due.map((o): Order => ({ ...o, state: "expired", version: o.version + 1, updatedAt: at }));
  if ((await expireOrderRows(trx, merchantId, expired, at)) !== expired.length) {
    // Unreachable while the rows are locked; kept as a guard against misuse.
    throw new Error("order rows changed under their locks");
  }
  await recordOrderEvents(trx, merchantId, "expired", expired, at);
  return expired;
}

/** lockOrder reads and locks an order, enforcing the caller's etag if one was sent. */
async function lockOrder(trx: OrderTx, merchantId: string, orderId: string, etag?: string): Promise<Order> {
  const current = await findOrder(trx, { merchantId, orderId }, "wait");
  if (!current) throw new NotFoundError("order", orderId);
  if (etag !== undefined && !etagMatches(etag, current)) throw new EtagMismatchError(`order "${orderId}"`, etagOf(current));
  return current;
}

/**
 * transition moves a locked order to `to` (or throws FAILED_PRECONDITION
 * naming its state), returning its stock first if `to` releases it, and
 * writes the order at its next version with the transition's event.
 */
async function transition(
  trx: OrderTx,
  who: OrderActor,
  current: Order,
  to: Exclude<OrderState, "pending_payment">,
  patch: Partial<Pick<Order, "paymentId" | "cancelReason">>,
  at: Date,
): Promise<Order> {
  checkTransition(current, to);
  if (releasesStock(to)) {
    const products = await lockProducts(
      trx,
      who.merchantId,
      current.lines.map((l) => l.sku),
    );
    await shiftStock(trx, who, current, products, to, at);
  }
  const next: Order = { ...current, ...patch, state: to, version: current.version + 1, updatedAt: at };
  if (to === "paid") next.paidAt = at;
  if (!(await updateOrderRow(trx, who.merchantId, next, current.version))) {
    // Unreachable while the row is locked; kept as a guard against misuse.
    throw new Error("order row changed under its lock");
  }
  await recordOrderEvent(trx, who.merchantId, to, next, at);
  return next;
}

/**
 * shiftStock takes ("created") or returns (any other event) each line's
 * quantity on its locked product, bumping the product's version, and writes
 * the products' audit entries and events (source ORDER, reference the order
 * id) like any other stock change. A line whose product was deleted (or
 * deleted and re-created under the same SKU) since the order was placed has
 * nothing to return to and is skipped; a return never lifts stock above the
 * catalog's maximum.
 */
async function shiftStock(
  trx: OrderTx,
  who: OrderActor,
  order: Order,
  products: ReadonlyMap<string, Product>,
  event: OrderEventName,
  at: Date,
): Promise<void> {
  const writes: ProductWrite[] = [];
  for (const line of order.lines) {
    const before = orderedProduct(line, products);
    if (!before) continue;
    writes.push({ kind: "stock", before, delta: event === "created" ? -line.quantity : stockBack(line, before.stock) });
  }
  await writeProducts(trx, stockContext(who, order, event), writes, at);
}

/**
 * orderedProduct is a line's locked product if it is still the one ordered:
 * undefined when it was deleted, or deleted and re-created under the same
 * SKU, since the order was placed (nothing to return to).
 */
function orderedProduct(line: OrderLine, products: ReadonlyMap<string, Product>): Product | undefined {
  const product = products.get(line.sku);
  return product?.id === line.productId ? product : undefined;
}

/** stockBack is what a line gives back to its product whose stock is `stock` by then: its quantity, never lifting the stock above the catalog's maximum. */
function stockBack(line: OrderLine, stock: number): number {
  return Math.min(line.quantity, PRODUCT_LIMITS.stock - stock);
}

/** stockContext is how an order's stock change appears in the products' audit trail and events: source ORDER, reference the order id. */
function stockContext(who: OrderActor, order: Order, event: OrderEventName): ChangeContext {
  return {
    merchantId: who.merchantId,
    actor: who.actor,
    sourceKind: "order",
    sourceRef: order.id,
    requestId: who.requestId,
    reason: `order ${event}`,
  };
}
