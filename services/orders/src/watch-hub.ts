/**
 * The order watch hub: one poller per process for every open WatchOrder
 * stream. Each stream used to read its order's version on its own every
 * watchIntervalMs: 2,000 streams open at checkout (one per unpaid order)
 * cost about 10,000 statements a second and 60% of a core of the process
 * (measured from outside under `npm start`), growing with every stream.
 * Now a stream waiting for its order to move registers here, and each round
 * reads the versions of all the watched orders of a merchant with one
 * statement (`order_id IN (…)`, up to BATCH ids each; one merchant per
 * statement, so one shard on Vitess): the cost follows the merchants with
 * open watches, not the streams. A round starts watchIntervalMs after the
 * previous one ended, and only while some stream waits.
 *
 * A failed read ends the waits of that merchant's streams with its error, as
 * a failed read of their own did; other merchants' waits go on.
 */
import { findOrderVersions, type OrderDb, type OrderRef } from "./store.ts";

export interface OrderWatchHub {
  /**
   * moved resolves with true once the order's version differs from
   * version, or with false once signal is aborted; it rejects if the read
   * of the order's version fails.
   */
  moved(ref: OrderRef, version: number, signal: AbortSignal): Promise<boolean>;
}

/** The most order ids one statement reads. */
const BATCH = 500;
/** Merchants read at once in a round: a few of the pool's connections, never all. */
const PARALLEL = 4;

interface Waiter {
  version: number;
  /** moved: the order is at another version. */
  resolve: () => void;
  reject: (error: unknown) => void;
}

export function createOrderWatchHub(db: OrderDb, intervalMs: number): OrderWatchHub {
  /** merchant id → order id → the streams waiting on it. */
  const waiting = new Map<string, Map<string, Set<Waiter>>>();
  let scheduled = false;

  const remove = (ref: OrderRef, waiter: Waiter) => {
    const ofMerchant = waiting.get(ref.merchantId);
    const ofOrder = ofMerchant?.get(ref.orderId);
    if (!ofMerchant || !ofOrder) return;
    ofOrder.delete(waiter);
    if (ofOrder.size === 0) ofMerchant.delete(ref.orderId);
    if (ofMerchant.size === 0) waiting.delete(ref.merchantId);
  };

  /** readMerchant reads the versions of one merchant's watched orders and settles the waits they decide. */
  const readMerchant = async (merchantId: string, orders: Map<string, Set<Waiter>>) => {
    const ids = [...orders.keys()];
    try {
      for (let i = 0; i < ids.length; i += BATCH) {
        for (const [orderId, version] of await findOrderVersions(db, merchantId, ids.slice(i, i + BATCH)))
          for (const waiter of orders.get(orderId) ?? []) {
            if (waiter.version === version) continue;
            remove({ merchantId, orderId }, waiter);
            waiter.resolve();
          }
      }
    } catch (error) {
      for (const [orderId, waiters] of orders)
        for (const waiter of waiters) {
          remove({ merchantId, orderId }, waiter);
          waiter.reject(error);
        }
    }
  };

  const round = async () => {
    const merchants = [...waiting];
    for (let i = 0; i < merchants.length; i += PARALLEL)
      await Promise.all(merchants.slice(i, i + PARALLEL).map(([merchantId, orders]) => readMerchant(merchantId, orders)));
    scheduled = false;
    schedule();
  };

  const schedule = () => {
    if (scheduled || waiting.size === 0) return;
    scheduled = true;
    // Unref'd: open watches never keep a stopping process alive (draining ends them anyway).
    setTimeout(() => void round(), intervalMs).unref();
  };

  return {
    moved(ref, version, signal) {
      if (signal.aborted) return Promise.resolve(false);
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          remove(ref, waiter);
          resolve(false);
        };
        const waiter: Waiter = {
          version,
          resolve: () => {
            signal.removeEventListener("abort", onAbort);
            resolve(true);
          },
          reject: (error) => {
            signal.removeEventListener("abort", onAbort);
            reject(error);
          },
        };
        signal.addEventListener("abort", onAbort, { once: true });
        const ofMerchant = waiting.get(ref.merchantId) ?? new Map<string, Set<Waiter>>();
        waiting.set(ref.merchantId, ofMerchant);
        const ofOrder = ofMerchant.get(ref.orderId) ?? new Set<Waiter>();
        ofMerchant.set(ref.orderId, ofOrder);
        ofOrder.add(waiter);
        schedule();
      });
    },
  };
}
