import type { ProjectionWaiter } from "@stockroom/catalog";
import { pause } from "@stockroom/common";
import { isAtOrAfter } from "./domain.ts";
import { findPosition, type SearchDb } from "./store.ts";

/**
 * createSearchWaiter serves CatalogService.UpdateProduct's wait_for_search:
 * it polls the SKU's row (one primary-key read) until the projection holds
 * the version or a newer state, backing off from 2 to 50 ms. Polling the
 * database works wherever the projector runs, in this process or not.
 */
export function createSearchWaiter(db: SearchDb): ProjectionWaiter {
  return {
    async waitFor(target, signal) {
      const wanted = { productId: target.productId, version: target.version };
      for (let delayMs = 2; ; delayMs = Math.min(delayMs * 2, 50)) {
        if (isAtOrAfter(await findPosition(db, target.merchantId, target.sku), wanted)) return;
        await pause(delayMs, signal);
        signal.throwIfAborted();
      }
    },
  };
}
