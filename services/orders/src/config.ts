import { readInt, type Env } from "@stockroom/common";
import type { RateLimit } from "@stockroom/common/rpc";

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
  };
}
