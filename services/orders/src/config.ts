import { readInt, type Env } from "@stockroom/common";
import type { RateLimit } from "@stockroom/common/rpc";
import type { BulkheadLimits } from "./bulkhead.ts";

/** OrderConfig holds the order settings; parseOrderConfig is pure over an env map. */
export interface OrderConfig {
  /** How long an unpaid order holds its stock (ORDER_RESERVATION_TTL_MS, default 15 minutes). */
  reservationTtlMs: number;
  /** Per merchant and per process (ORDER_RATE_PER_SEC, 0 = unlimited; ORDER_RATE_BURST). */
  rateLimit: RateLimit;
  /** How often the sweeper looks for expired reservations. */
  sweepEveryMs: number;
  /** Orders the sweeper reads per scan. */
  sweepBatch: number;
  /** How often WatchOrder looks for a change. */
  watchIntervalMs: number;
  /**
   * Order transactions in flight per merchant and per process
   * (ORDER_IN_FLIGHT_PER_MERCHANT, ORDER_IN_FLIGHT_MAX) and orders of one SKU
   * waiting for a batch (ORDER_WAITING_PER_SKU); 0 = no cap. A call waits
   * at most ORDER_IN_FLIGHT_WAIT_MS for one of its merchant's places; past
   * that, RESOURCE_EXHAUSTED with RetryInfo. A merchant's single-line orders
   * under way (queued or in a transaction) are capped at what its recent
   * answer rate clears in ORDER_QUEUE_MS (0 = no cap), never below a SKU's
   * full line, ORDER_WAITING_PER_SKU (and 4 x ORDER_BATCH_MAX; reservations.ts).
   */
  bulkhead: BulkheadLimits;
  /** The most single-line orders that share a transaction: of one SKU, or lone orders of one merchant's SKUs (ORDER_BATCH_MAX; 1 = no batching). */
  maxBatch: number;
  /**
   * How long a committed "not enough stock" refuses orders without a read
   * (ORDER_SOLD_OUT_TRUST_MS): the longest a restock made elsewhere could go
   * unseen. Default 0: every refusal is confirmed by a non-locking read, so a
   * restock is seen by the next order; raise it to spare that read in a storm
   * of calls on a sold-out SKU.
   */
  soldOutTrustMs: number;
}

export function parseOrderConfig(env: Env): OrderConfig {
  return {
    reservationTtlMs: readInt(env, "ORDER_RESERVATION_TTL_MS", 15 * 60_000, 1000, 7 * 24 * 3_600_000),
    rateLimit: {
      ratePerSec: readInt(env, "ORDER_RATE_PER_SEC", 500, 0, 1_000_000),
      burst: readInt(env, "ORDER_RATE_BURST", 1000, 1, 10_000_000),
    },
    sweepEveryMs: readInt(env, "ORDER_SWEEP_EVERY_MS", 5000, 100, 3_600_000),
    sweepBatch: readInt(env, "ORDER_SWEEP_BATCH", 100, 1, 10_000),
    watchIntervalMs: readInt(env, "ORDER_WATCH_INTERVAL_MS", 200, 10, 60_000),
    bulkhead: {
      perMerchant: readInt(env, "ORDER_IN_FLIGHT_PER_MERCHANT", 16, 0, 100_000),
      total: readInt(env, "ORDER_IN_FLIGHT_MAX", 64, 0, 1_000_000),
      waitingPerSku: readInt(env, "ORDER_WAITING_PER_SKU", 1024, 0, 1_000_000),
      waitMs: readInt(env, "ORDER_IN_FLIGHT_WAIT_MS", 40, 0, 10_000),
      queueMs: readInt(env, "ORDER_QUEUE_MS", 1000, 0, 60_000),
    },
    maxBatch: readInt(env, "ORDER_BATCH_MAX", 32, 1, 1000),
    soldOutTrustMs: readInt(env, "ORDER_SOLD_OUT_TRUST_MS", 0, 0, 60_000),
  };
}
