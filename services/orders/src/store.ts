import path from "node:path";
import type { ColumnType, Insertable, Kysely, Selectable, Transaction } from "kysely";
import { insertRows, type MigrationSet } from "@stockroom/common/db";
import type { CatalogTables } from "@stockroom/catalog";
import type { Order, OrderLine, OrderState } from "./domain.ts";

/**
 * orderMigrations is the folder of the order tables. Orders reserve stock in
 * the catalog's products table, so catalogMigrations must be applied too.
 */
export const orderMigrations: MigrationSet = {
  name: "orders",
  folder: path.join(import.meta.dirname, "..", "migrations"),
};

export interface OrderRow {
  merchant_id: string;
  order_id: string;
  state: OrderState;
  buyer_reference: string;
  currency: string;
  total_minor: number;
  payment_id: string | null;
  cancel_reason: string;
  version: number;
  created_at: Date;
  updated_at: Date;
  expire_at: Date;
  /** NULL until paid; never written when an order is placed (the hot path's inserts leave it out). */
  paid_at: ColumnType<Date | null, Date | null | undefined, Date | null>;
}

export interface OrderLineRow {
  merchant_id: string;
  order_id: string;
  line_no: number;
  sku: string;
  product_id: string;
  title: string;
  quantity: number;
  unit_price_minor: number;
}

export interface OrderTables extends CatalogTables {
  orders: OrderRow;
  order_lines: OrderLineRow;
}

export type OrderDb = Kysely<OrderTables>;
export type OrderTx = Transaction<OrderTables>;

/** OrderRef names one order of one merchant. */
export interface OrderRef {
  merchantId: string;
  orderId: string;
}

function rowToOrder(row: Selectable<OrderRow>, lines: Selectable<OrderLineRow>[]): Order {
  return {
    id: row.order_id,
    state: row.state,
    buyerReference: row.buyer_reference,
    currency: row.currency,
    lines: lines.map(
      (l): OrderLine => ({
        sku: l.sku,
        productId: l.product_id,
        title: l.title,
        quantity: l.quantity,
        unitPriceMinor: Number(l.unit_price_minor),
      }),
    ),
    totalMinor: Number(row.total_minor),
    paymentId: row.payment_id,
    cancelReason: row.cancel_reason,
    version: Number(row.version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    expireAt: row.expire_at,
    // An order paid before paid_at existed and still PAID was paid at its last change.
    paidAt: row.paid_at ?? (row.state === "paid" ? row.updated_at : null),
  };
}

/** insertOrder adds an order and its lines (two statements, deferred: they ride with the next one). */
export function insertOrder(trx: OrderTx, merchantId: string, order: Order): Promise<void> {
  return insertOrders(trx, merchantId, [order]);
}

/** insertOrders adds orders and their lines with two multi-row statements, deferred (a hot-SKU batch's orders). */
export async function insertOrders(trx: OrderTx, merchantId: string, orders: readonly Order[]): Promise<void> {
  await insertRows<Insertable<OrderRow>>(
    trx,
    "orders",
    orders.map((order) => ({
      merchant_id: merchantId,
      order_id: order.id,
      state: order.state,
      buyer_reference: order.buyerReference,
      currency: order.currency,
      total_minor: order.totalMinor,
      payment_id: order.paymentId,
      cancel_reason: order.cancelReason,
      version: order.version,
      created_at: order.createdAt,
      updated_at: order.updatedAt,
      expire_at: order.expireAt,
    })),
    { deferred: true },
  );
  await insertRows<OrderLineRow>(
    trx,
    "order_lines",
    orders.flatMap((order) =>
      order.lines.map((l, i) => ({
        merchant_id: merchantId,
        order_id: order.id,
        line_no: i + 1,
        sku: l.sku,
        product_id: l.productId,
        title: l.title,
        quantity: l.quantity,
        unit_price_minor: l.unitPriceMinor,
      })),
    ),
    { deferred: true },
  );
}

/**
 * findOrder reads one order with its lines; lock locks the order row for
 * the transaction. Lines are immutable, so only the order row is ever locked.
 */
export async function findOrder(db: OrderDb | OrderTx, ref: OrderRef, lock?: "wait"): Promise<Order | undefined> {
  let q = db.selectFrom("orders").selectAll().where("merchant_id", "=", ref.merchantId).where("order_id", "=", ref.orderId);
  if (lock) q = q.forUpdate();
  const row = await q.executeTakeFirst();
  if (!row) return undefined;
  const lines = await db
    .selectFrom("order_lines")
    .selectAll()
    .where("merchant_id", "=", ref.merchantId)
    .where("order_id", "=", ref.orderId)
    .orderBy("line_no")
    .execute();
  return rowToOrder(row, lines);
}

/** findOrderVersions reads only the versions of some of a merchant's orders (one statement): what WatchOrder's watch hub (common's createWatchHub) polls. */
export async function findOrderVersions(db: OrderDb, merchantId: string, orderIds: readonly string[]): Promise<Map<string, number>> {
  const rows = await db
    .selectFrom("orders")
    .select(["order_id", "version"])
    .where("merchant_id", "=", merchantId)
    .where("order_id", "in", orderIds)
    .execute();
  return new Map(rows.map((r) => [r.order_id, Number(r.version)]));
}

/** updateOrderRow writes an order's mutable columns if it is still at expectedVersion, and tells whether it did. */
export async function updateOrderRow(trx: OrderTx, merchantId: string, next: Order, expectedVersion: number): Promise<boolean> {
  const result = await trx
    .updateTable("orders")
    .set({
      state: next.state,
      payment_id: next.paymentId,
      cancel_reason: next.cancelReason,
      version: next.version,
      updated_at: next.updatedAt,
      paid_at: next.paidAt,
    })
    .where("merchant_id", "=", merchantId)
    .where("order_id", "=", next.id)
    .where("version", "=", expectedVersion)
    .executeTakeFirst();
  return result.numUpdatedRows === 1n;
}

/**
 * expireOrderRows moves a merchant's unpaid orders, locked by the caller, to
 * EXPIRED at their next version with one statement, and returns how many
 * it moved (all of them, while they are locked and unpaid).
 */
export async function expireOrderRows(trx: OrderTx, merchantId: string, orders: readonly Order[], at: Date): Promise<number> {
  const result = await trx
    .updateTable("orders")
    .set((eb) => ({ state: "expired", version: eb("version", "+", 1), updated_at: at }))
    .where("merchant_id", "=", merchantId)
    .where(
      "order_id",
      "in",
      orders.map((o) => o.id),
    )
    .where("state", "=", "pending_payment")
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

/** listOrders reads one keyset page of a merchant's orders, newest first, with their lines (two statements). */
export async function listOrders(
  db: OrderDb,
  merchantId: string,
  query: { state?: OrderState; beforeOrderId?: string; limit: number },
): Promise<Order[]> {
  let q = db.selectFrom("orders").selectAll().where("merchant_id", "=", merchantId);
  if (query.state) q = q.where("state", "=", query.state);
  if (query.beforeOrderId) q = q.where("order_id", "<", query.beforeOrderId);
  return withLines(db, merchantId, await q.orderBy("order_id", "desc").limit(query.limit).execute());
}

/**
 * findOrders reads some of a merchant's orders with their lines, locking
 * their rows SKIP LOCKED: an order another transaction holds is left out.
 */
export async function findOrders(trx: OrderTx, merchantId: string, orderIds: readonly string[]): Promise<Order[]> {
  if (orderIds.length === 0) return [];
  const rows = await trx
    .selectFrom("orders")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("order_id", "in", orderIds)
    .orderBy("order_id")
    .forUpdate()
    .skipLocked()
    .execute();
  return withLines(trx, merchantId, rows);
}

/** withLines reads the lines of a merchant's order rows (one statement) and returns the orders, in the rows' order. */
async function withLines(db: OrderDb | OrderTx, merchantId: string, rows: Selectable<OrderRow>[]): Promise<Order[]> {
  if (rows.length === 0) return [];
  const lines = await db
    .selectFrom("order_lines")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where(
      "order_id",
      "in",
      rows.map((r) => r.order_id),
    )
    .orderBy("order_id")
    .orderBy("line_no")
    .execute();
  const byOrder = Map.groupBy(lines, (l) => l.order_id);
  return rows.map((r) => rowToOrder(r, byOrder.get(r.order_id) ?? []));
}

/**
 * findDueOrders lists unpaid orders whose reservation ran out, oldest
 * first. It is the one statement that does not name a merchant: a
 * maintenance scan of idx_orders_expiry, so the sweeper runs it against each
 * shard target (sweeper.ts; on Vitess a shard's own rows, no scatter); the
 * expiry itself runs per order, in a one-merchant transaction.
 */
export async function findDueOrders(db: OrderDb, now: Date, limit: number): Promise<OrderRef[]> {
  const rows = await db
    .selectFrom("orders")
    .select(["merchant_id", "order_id"])
    .where("state", "=", "pending_payment")
    .where("expire_at", "<=", now)
    .orderBy("expire_at")
    .limit(limit)
    .execute();
  return rows.map((r) => ({ merchantId: r.merchant_id, orderId: r.order_id }));
}
