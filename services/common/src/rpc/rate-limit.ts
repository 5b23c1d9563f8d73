import { RateLimitedError } from "../errors.ts";

/** RateLimit is a sustained rate with a burst allowance; ratePerSec 0 means unlimited. */
export interface RateLimit {
  ratePerSec: number;
  burst: number;
}

export interface RateLimiter {
  /** take spends one token of key's bucket, or throws RateLimitedError saying when one will be there. */
  take(key: string): void;
}

interface Bucket {
  tokens: number;
  at: number;
}

/**
 * createRateLimiter keeps one token bucket per key (a merchant), in this
 * process only: with N replicas behind a balancer a merchant gets about N
 * times the rate, so set the rate per replica (the cluster-wide budget
 * divided by N). A process-local bucket costs no network hop on the hot
 * path, and it is load shedding: an over-eager merchant is refused before
 * its calls reach the database, while other merchants' buckets are
 * untouched. At most maxKeys buckets are kept; the least recently used one
 * goes first (forgetting a bucket only ever gives its key a fresh burst).
 */
export function createRateLimiter(limit: RateLimit, options: { maxKeys?: number; now?: () => number } = {}): RateLimiter {
  if (limit.ratePerSec <= 0) return { take() {} };
  const maxKeys = options.maxKeys ?? 100_000;
  const now = options.now ?? (() => performance.now());
  const burst = Math.max(1, limit.burst);
  const perMs = limit.ratePerSec / 1000;
  const buckets = new Map<string, Bucket>();
  return {
    take(key) {
      const at = now();
      const seen = buckets.get(key);
      const bucket = seen ? { tokens: Math.min(burst, seen.tokens + (at - seen.at) * perMs), at } : { tokens: burst, at };
      // Re-inserting keeps the Map in least-recently-used order for eviction.
      buckets.delete(key);
      if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
      buckets.set(key, bucket);
      if (bucket.tokens < 1) {
        const retryAfterMs = Math.ceil((1 - bucket.tokens) / perMs);
        throw new RateLimitedError(
          `rate limit of ${limit.ratePerSec} calls per second exceeded; retry in ${retryAfterMs} ms`,
          retryAfterMs,
        );
      }
      bucket.tokens -= 1;
    },
  };
}
