/**
 * The bulkhead: a cap on the order transactions in flight, per merchant and
 * for the whole process. The rate limiter bounds how often a merchant may
 * call; it does not stop a merchant whose calls are slow (a hot SKU, a long
 * bulk chunk holding its rows) from filling the database pool and the event
 * loop that every other merchant shares.
 *
 * A call that finds its merchant's places taken may wait for one in its
 * merchant's own line, if its turn is expected within waitMs: a place frees
 * every mean/perMerchant ms, where mean is the recent mean time a
 * transaction stays in flight (an EWMA), so the line is as long as the
 * places can serve within waitMs and no longer. Otherwise (or when the wait
 * does run out, or the whole process is at its cap) it is refused at once
 * with RESOURCE_EXHAUSTED and google.rpc.RetryInfo, before any database
 * work, its retry delay being when its turn would have come: clients come
 * back about when there is room, not all at once. A merchant's line never
 * holds up another merchant's calls.
 *
 * A place is a transaction: a hot SKU's batch (reservations.ts) holds one
 * for all the orders it carries, and so does a merchant's shared
 * transaction of lone orders (they take a place to be admitted and give it
 * up as they queue for it), so batching is never capped by the bulkhead;
 * the orders waiting for a batch are bounded by the batcher.
 */
import { RateLimitedError } from "@stockroom/common";

export interface BulkheadLimits {
  /** Transactions one merchant may have in flight in this process (0: no cap). */
  perMerchant: number;
  /** Transactions all merchants together may have in flight in this process (0: no cap). */
  total: number;
  /** Orders of one SKU that may wait for a batch (reservations.ts) in this process (0: no cap). */
  waitingPerSku: number;
  /** How long a call may wait for one of its merchant's places before it is refused. */
  waitMs: number;
  /**
   * How long a merchant's single-line orders may be expected to queue in this
   * process (reservations.ts, underWay): orders past what the merchant's
   * recent answer rate clears in this time are refused (0: no cap).
   */
  queueMs: number;
}

export interface Bulkhead {
  /** tryEnter takes a place for one of merchant's transactions if one is free; call the returned function when it is done. */
  tryEnter(merchantId: string): (() => void) | undefined;
  /** enter takes a place, waiting for one in the merchant's line at most waitMs, or throws RateLimitedError. */
  enter(merchantId: string): Promise<() => void>;
  /**
   * hold takes a place even past the caps, for a transaction that must run:
   * one shared by orders admitted already (reservations.ts), at most a few
   * per merchant. It counts like any other, so calls after it find less room.
   */
  hold(merchantId: string): () => void;
  /** refusal is the RateLimitedError a full bulkhead answers with, saying what is full; its retry delay is afterMs (default: a transaction's mean time), within bounds. */
  refusal(what: string, afterMs?: number): RateLimitedError;
  /**
   * overloaded is the refusal enter would answer a call of merchant's with
   * at once (no place free and none expected within waitMs), or undefined:
   * the server's early shedding asks it before decoding a call.
   */
  overloaded(merchantId: string): RateLimitedError | undefined;
}

/** The retry delay's bounds: a floor so clients do not spin, a ceiling so a slow spell does not park them for long. */
const MIN_RETRY_MS = 5;
const MAX_RETRY_MS = 1000;
/** The EWMA's weight of each new call. */
const ALPHA = 0.05;

interface Merchant {
  inFlight: number;
  /** Calls waiting for a place, oldest first; each is handed the place of a call that leaves. */
  line: ((release: () => void) => void)[];
}

export function createBulkhead(limits: BulkheadLimits, now: () => number = () => performance.now()): Bulkhead {
  const perMerchant = limits.perMerchant > 0 ? limits.perMerchant : Number.POSITIVE_INFINITY;
  const total = limits.total > 0 ? limits.total : Number.POSITIVE_INFINITY;
  const merchants = new Map<string, Merchant>();
  let all = 0;
  let meanMs = MIN_RETRY_MS;

  const refusal = (what: string, afterMs = meanMs): RateLimitedError => {
    const retryAfterMs = Math.min(MAX_RETRY_MS, Math.max(MIN_RETRY_MS, Math.ceil(afterMs)));
    return new RateLimitedError(`${what}; retry in ${retryAfterMs} ms`, retryAfterMs);
  };

  /** place is a held place's release: it hands the place to the merchant's next waiting call, or frees it. */
  const place = (merchantId: string, m: Merchant): (() => void) => {
    const started = now();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      meanMs += ALPHA * (now() - started - meanMs);
      const next = m.line.shift();
      if (next) return next(place(merchantId, m));
      all--;
      m.inFlight--;
      if (m.inFlight === 0 && m.line.length === 0) merchants.delete(merchantId);
    };
  };

  /** hold: see Bulkhead.hold. */
  const hold = (merchantId: string): (() => void) => {
    const m = merchants.get(merchantId) ?? { inFlight: 0, line: [] };
    merchants.set(merchantId, m);
    m.inFlight++;
    all++;
    return place(merchantId, m);
  };

  const tryEnter = (merchantId: string): (() => void) | undefined => {
    const m = merchants.get(merchantId);
    if (m && (m.inFlight >= perMerchant || m.line.length > 0)) return undefined;
    return all >= total ? undefined : hold(merchantId);
  };

  /** overloaded: see Bulkhead.overloaded. */
  const overloaded = (merchantId: string): RateLimitedError | undefined => {
    const m = merchants.get(merchantId);
    if (all >= total && (!m || m.inFlight < perMerchant))
      return refusal(`the orders service has ${all} transactions in flight (its limit)`);
    if (!m || m.inFlight < perMerchant) return undefined;
    // When a call's turn is expected: one place frees every meanMs / perMerchant.
    const turnMs = ((m.line.length + 1) * meanMs) / perMerchant;
    if (turnMs <= limits.waitMs) return undefined;
    return refusal(
      `this merchant already has ${m.inFlight} order transactions in flight (the limit per merchant) and ${m.line.length} waiting`,
      turnMs,
    );
  };

  return {
    refusal,
    tryEnter,
    hold,
    overloaded,
    enter(merchantId) {
      const entered = tryEnter(merchantId);
      if (entered) return Promise.resolve(entered);
      const refused = overloaded(merchantId);
      if (refused) return Promise.reject(refused);
      // Not entered and not refused: the merchant holds all its places, and its turn is expected within waitMs.
      const m = merchants.get(merchantId)!;
      return new Promise((resolve, reject) => {
        const waiter = (release: () => void) => {
          clearTimeout(timer);
          resolve(release);
        };
        const timer = setTimeout(() => {
          m.line.splice(m.line.indexOf(waiter), 1);
          if (m.inFlight === 0 && m.line.length === 0) merchants.delete(merchantId);
          reject(refusal(`this merchant's ${m.inFlight} order transactions in flight did not leave a place within ${limits.waitMs} ms`));
        }, limits.waitMs);
        m.line.push(waiter);
      });
    },
  };
}
