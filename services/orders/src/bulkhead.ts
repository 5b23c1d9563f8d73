/**
 * The bulkhead: a cap on the order calls in flight, per merchant and for the
 * whole process. The rate limiter bounds how often a merchant may call; it
 * does not stop a merchant whose calls are slow (a hot SKU, a long bulk
 * chunk holding its rows) from filling the database pool and the event loop
 * that every other merchant shares. A call past either cap is refused at
 * once with RESOURCE_EXHAUSTED and google.rpc.RetryInfo, before any database
 * work, so a refusal costs microseconds and the calls admitted keep their
 * latency; a queue instead would only turn overload into latency for all.
 *
 * The retry delay is the recent mean time a call stays in flight (an EWMA),
 * about when the calls holding the places will have left.
 *
 * A place is a transaction: a hot SKU's batch (reservations.ts) holds one
 * for all the orders it carries, so batching is never capped by the
 * bulkhead; the orders waiting for a batch are bounded by the batcher.
 */
import { RateLimitedError } from "@stockroom/common";

export interface BulkheadLimits {
  /** Calls one merchant may have in flight in this process (0: no cap). */
  perMerchant: number;
  /** Calls all merchants together may have in flight in this process (0: no cap). */
  total: number;
  /** Orders of one SKU that may wait for a batch (reservations.ts) in this process (0: no cap). */
  waitingPerSku: number;
}

export interface Bulkhead {
  /** enter takes a place for one of merchant's calls, or throws RateLimitedError; call the returned function when the call is done. */
  enter(merchantId: string): () => void;
  /** refuse throws the RateLimitedError a full bulkhead throws, saying what is full. */
  refuse(what: string): never;
}

/** The retry delay's bounds: a floor so clients do not spin, a ceiling so a slow spell does not park them for long. */
const MIN_RETRY_MS = 5;
const MAX_RETRY_MS = 1000;
/** The EWMA's weight of each new call. */
const ALPHA = 0.05;

export function createBulkhead(limits: BulkheadLimits, now: () => number = () => performance.now()): Bulkhead {
  const perMerchant = limits.perMerchant > 0 ? limits.perMerchant : Number.POSITIVE_INFINITY;
  const total = limits.total > 0 ? limits.total : Number.POSITIVE_INFINITY;
  const inFlight = new Map<string, number>();
  let all = 0;
  let meanMs = MIN_RETRY_MS;
  const refuse = (what: string): never => {
    const retryAfterMs = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, Math.ceil(meanMs)));
    throw new RateLimitedError(`${what}; retry in ${retryAfterMs} ms`, retryAfterMs);
  };
  return {
    refuse,
    enter(merchantId) {
      const mine = inFlight.get(merchantId) ?? 0;
      if (mine >= perMerchant) refuse(`this merchant already has ${mine} order calls in flight (the limit per merchant)`);
      if (all >= total) refuse(`the orders service has ${all} calls in flight (its limit)`);
      inFlight.set(merchantId, mine + 1);
      all++;
      const started = now();
      let done = false;
      return () => {
        if (done) return;
        done = true;
        all--;
        const left = inFlight.get(merchantId)! - 1;
        if (left === 0) inFlight.delete(merchantId);
        else inFlight.set(merchantId, left);
        meanMs += ALPHA * (now() - started - meanMs);
      };
    },
  };
}
