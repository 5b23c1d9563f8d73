/**
 * The product-write port: the one place that changes the products table.
 * Catalog handlers, bulk chunks (apply and rollback) and order reservations
 * all lock and write products through it, so every change gets the same
 * version bump, the same change time rule (changeTime) and, in the caller's
 * transaction, its audit entry and outbox event. It is set-based: a bulk
 * chunk's thousand changes cost one statement per kind, not one per item.
 *
 * Lock order: lockProducts takes row locks in SKU order, so two writers
 * sharing SKUs (an order and a bulk chunk, two orders) queue instead of
 * deadlocking.
 */
import { MASK_PATHS, changeTime, type Product } from "./domain.ts";
import { recordChanges, type ChangeContext, type ProductChangeRecord } from "./events.ts";
import {
  deleteProductRow,
  findProduct,
  findProducts,
  insertProducts,
  moveStockRow,
  upsertProducts,
  writeIfCurrent,
  writeLockedProduct,
  type CatalogTx,
} from "./store.ts";

export type { ChangeContext } from "./events.ts";

/**
 * ProductWrite is one change a writer asks for. The port computes the
 * version, the change time and the changed fields of a create; the caller
 * holds the locks of the products it updates, deletes or restocks (read
 * with lockProducts or lockProduct in the same transaction).
 */
export type ProductWrite =
  /** A new product: id, SKU and fields; version and times are set here. */
  | { kind: "create"; product: Omit<Product, "version" | "createdAt" | "updatedAt"> }
  /** New field values for a locked product; changedFields are its field-mask paths that differ. */
  | {
      kind: "update";
      before: Product;
      fields: Omit<Product, "id" | "sku" | "version" | "createdAt" | "updatedAt">;
      changedFields: string[];
    }
  /**
   * New field values for a product the caller has NOT locked or read in this
   * transaction: before is the state it last saw (a cached answer). The
   * write applies only if the row is still exactly before; otherwise it
   * fails the transaction (isStaleWrite), and nothing of the change
   * commits (store.ts writeIfCurrent, insertChangeIfWritten).
   */
  | {
      kind: "update-if-current";
      before: Product;
      fields: Omit<Product, "id" | "sku" | "version" | "createdAt" | "updatedAt">;
      changedFields: string[];
    }
  /** Removes a locked product. */
  | { kind: "delete"; before: Product }
  /** Adds delta to a locked product's stock (negative takes stock); the caller checked the bounds under the lock. */
  | { kind: "stock"; before: Product; delta: number };

/**
 * lockProducts reads and locks a merchant's products by SKU, in SKU order,
 * for the caller's transaction; SKUs without a product are absent. With
 * skipLocked, rows another transaction holds are left out too (SKIP
 * LOCKED): nothing waits, and an absent SKU is either missing or busy.
 */
export async function lockProducts(
  trx: CatalogTx,
  merchantId: string,
  skus: readonly string[],
  options: { skipLocked?: boolean } = {},
): Promise<Map<string, Product>> {
  const unique = [...new Set(skus)].sort();
  return new Map((await findProducts(trx, merchantId, unique, options.skipLocked ? "skip locked" : true)).map((p) => [p.sku, p]));
}

/** lockProduct reads and locks one product for the caller's transaction. */
export function lockProduct(trx: CatalogTx, merchantId: string, sku: string): Promise<Product | undefined> {
  return findProduct(trx, merchantId, sku, true);
}

/**
 * writeProducts applies the writes in the caller's transaction and records
 * each one's audit entry and outbox event under ctx, and returns the states
 * after them, in the order of the writes (for a delete: the tombstone, the
 * last state at the next version). A create whose SKU is taken fails the
 * statement with ER_DUP_ENTRY, which the caller maps (ALREADY_EXISTS, or a
 * redelivered chunk). Writes whose result nothing reads ride with the
 * COMMIT (deferred writes); creates and deletes run at once, so a taken SKU
 * or a vanished row fails here.
 */
export async function writeProducts(
  trx: CatalogTx,
  ctx: ChangeContext,
  writes: readonly ProductWrite[],
  now = new Date(),
): Promise<Product[]> {
  const created: Product[] = [];
  const updated: { before: Product; next: Product }[] = [];
  const unlocked: { before: Product; next: Product }[] = [];
  const restocked: { before: Product; delta: number; at: Date }[] = [];
  const deleted: Product[] = [];
  const changes: ProductChangeRecord[] = [];
  const after: Product[] = [];
  for (const w of writes) {
    if (w.kind === "create") {
      const product: Product = { ...w.product, version: 1, createdAt: now, updatedAt: now };
      created.push(product);
      changes.push({ type: "created", before: undefined, product, changedFields: [...MASK_PATHS], at: now });
      after.push(product);
      continue;
    }
    const at = changeTime(w.before, now);
    const version = w.before.version + 1;
    switch (w.kind) {
      case "update":
      case "update-if-current": {
        const next: Product = { ...w.before, ...w.fields, version, updatedAt: at };
        (w.kind === "update" ? updated : unlocked).push({ before: w.before, next });
        changes.push({
          type: "updated",
          before: w.before,
          product: next,
          changedFields: w.changedFields,
          at,
          unlocked: w.kind !== "update",
        });
        after.push(next);
        break;
      }
      case "stock": {
        const next: Product = { ...w.before, stock: w.before.stock + w.delta, version, updatedAt: at };
        restocked.push({ before: w.before, delta: w.delta, at });
        changes.push({ type: "updated", before: w.before, product: next, changedFields: ["stock"], at });
        after.push(next);
        break;
      }
      case "delete": {
        const tombstone: Product = { ...w.before, version, updatedAt: at };
        deleted.push(w.before);
        changes.push({ type: "deleted", before: w.before, product: tombstone, changedFields: [], at });
        after.push(tombstone);
        break;
      }
    }
  }

  for (const before of deleted) {
    if (!(await deleteProductRow(trx, ctx.merchantId, before.sku, before.version)))
      throw new Error(`product "${before.sku}" changed under its lock`);
  }
  await insertProducts(trx, ctx.merchantId, created);
  if (updated.length === 1) await writeLockedProduct(trx, ctx.merchantId, updated[0]!.next, updated[0]!.before.version);
  else
    await upsertProducts(
      trx,
      ctx.merchantId,
      updated.map((u) => u.next),
    );
  for (const u of unlocked) await writeIfCurrent(trx, ctx.merchantId, u.next, u.before);
  for (const r of restocked) await moveStockRow(trx, ctx.merchantId, r.before, r.delta, r.at);
  await recordChanges(trx, ctx, changes);
  return after;
}

/** StockMove is one change of a series on one product: its own context (who, which order) and delta. */
export interface StockMove {
  ctx: ChangeContext;
  delta: number;
}

/** StockSeries is the successive stock moves of ONE locked product. */
export interface StockSeries {
  product: Product;
  moves: readonly StockMove[];
}

/**
 * writeStockSeries applies successive stock changes to products the caller
 * holds locked, as the orders' batches need: per product one UPDATE by the
 * sum, while each move keeps what a change of its own would have (the next
 * version, a change time after the previous one, its audit entry and outbox
 * event under its own context), so readers and the audit trail cannot tell
 * a series from the same changes made one by one. The audit entries and
 * events of all the moves go in one insert each (recordChanges), not one
 * per move. The caller checked every move's bounds under the lock; every
 * move's context names merchantId. Returns each series' states after each
 * of its moves, in order.
 */
export async function writeStockSeries(
  trx: CatalogTx,
  merchantId: string,
  series: readonly StockSeries[],
  now = new Date(),
): Promise<Product[][]> {
  const changes: (ProductChangeRecord & { ctx: ChangeContext })[] = [];
  const afters: Product[][] = [];
  for (const { product, moves } of series) {
    const after: Product[] = [];
    afters.push(after);
    if (moves.length === 0) continue;
    let before = product;
    let delta = 0;
    for (const move of moves) {
      const next: Product = {
        ...before,
        stock: before.stock + move.delta,
        version: before.version + 1,
        updatedAt: changeTime(before, now),
      };
      changes.push({ type: "updated", before, product: next, changedFields: ["stock"], at: next.updatedAt, ctx: move.ctx });
      after.push(next);
      delta += move.delta;
      before = next;
    }
    await moveStockRow(trx, merchantId, product, delta, before.updatedAt, moves.length);
  }
  const [first] = changes;
  if (first) await recordChanges(trx, first.ctx, changes);
  return afters;
}
