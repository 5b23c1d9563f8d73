/**
 * The product states a catalog server last saw (read, or committed itself),
 * by merchant and SKU, the least recently used dropped past a bound: what
 * UpdateProduct's one-round-trip path starts from (rpc.ts updateIfCurrent).
 *
 * An entry is only ever a state the product had, committed: a row read, or
 * the state a transaction of this server committed. It may be stale (another
 * writer, another replica, a bulk job, an order), which is why the write
 * built from it applies only if the row is still exactly that state
 * (store.ts writeIfCurrent); a stale entry costs that call one round trip
 * and is replaced by what the locking path reads.
 *
 * "Still that state" is judged by product id and version alone, which holds
 * because every change to a product row bumps its version (the
 * product-write port). A data migration that rewrote rows must bump it too,
 * or servers would write their recent states back over its values.
 */
import type { Product } from "./domain.ts";

/** RECENT_PRODUCTS bounds the entries: about 1 KB each, so ~10 MB at most per server. */
export const RECENT_PRODUCTS = 10_000;

export interface RecentProducts {
  get(merchantId: string, sku: string): Product | undefined;
  set(merchantId: string, product: Product): void;
  delete(merchantId: string, sku: string): void;
}

export function createRecentProducts(max: number): RecentProducts {
  // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
  const entries = new Map<string, Product>();
  const keyOf = (merchantId: string, sku: string) => `${merchantId}\u0000${sku}`;
  return {
    get(merchantId, sku) {
      const key = keyOf(merchantId, sku);
      const product = entries.get(key);
      if (product) {
        entries.delete(key);
        entries.set(key, product);
      }
      return product;
    },
    set(merchantId, product) {
      const key = keyOf(merchantId, product.sku);
      const held = entries.get(key);
      // Never step back: a slower call's older read must not replace a newer state.
      if (held && held.id === product.id && held.version > product.version) return;
      entries.delete(key);
      entries.set(key, product);
      if (entries.size > max) entries.delete(entries.keys().next().value!);
    },
    delete(merchantId, sku) {
      entries.delete(keyOf(merchantId, sku));
    },
  };
}
