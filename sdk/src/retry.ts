/**
 * Retry rules. A call is retried only when repeating it cannot apply it
 * twice, and only for failures that a later attempt can cure:
 *
 * - UNAVAILABLE, or a connection that broke before the answer arrived:
 *   retried for idempotent calls (reads, calls carrying a request_id, and
 *   calls idempotent by contract such as AppendUploadPart).
 * - RESOURCE_EXHAUSTED with google.rpc.RetryInfo (a rate limit): retried for
 *   any call after at least the server's delay, since a rejected call was
 *   not run; without RetryInfo (a quota) it is not retried.
 * - DEADLINE_EXCEEDED: retried for idempotent calls while the call's own
 *   deadline has time left.
 * - ABORTED is an etag conflict here (ConflictError), never retried: only the
 *   caller can merge. Everything else is final.
 *
 * Delays grow exponentially with full jitter (AWS architecture blog,
 * "Exponential Backoff And Jitter"): a random wait between 0 and
 * min(maxDelayMs, initialDelayMs * 2^attempt).
 */
import { Code } from "@connectrpc/connect";
import type { StockroomError, RateLimitedError } from "./errors.ts";

export interface RetryOptions {
  /** Attempts per call, the first included; 1 turns retries off. Default 4. */
  maxAttempts?: number;
  /** The cap of the first backoff, in ms. Default 100. */
  initialDelayMs?: number;
  /** The largest backoff, in ms. Default 5,000. */
  maxDelayMs?: number;
  /** The longest RetryInfo delay worth waiting for; a longer one throws RateLimitedError at once. Default 30,000. */
  maxRetryInfoDelayMs?: number;
}

export type RetryPolicy = Readonly<Required<RetryOptions>>;

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 4, initialDelayMs: 100, maxDelayMs: 5_000, maxRetryInfoDelayMs: 30_000 };

/** resolveRetry fills in defaults; `false` turns retries off. */
export function resolveRetry(options: RetryOptions | false | undefined): RetryPolicy {
  if (options === false) return { ...DEFAULT_RETRY, maxAttempts: 1 };
  const policy = { ...DEFAULT_RETRY, ...options };
  for (const [key, value] of Object.entries(policy)) {
    if (!Number.isFinite(value) || value < 0) throw new RangeError(`retry.${key} must be a number ≥ 0, not ${value}`);
  }
  if (policy.maxAttempts < 1) throw new RangeError("retry.maxAttempts must be at least 1");
  return policy;
}

/** backoffMs is the full-jitter delay before retry number attempt + 1 (attempt counts from 0). */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  return Math.floor(random() * Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** attempt));
}

/**
 * retryDelayMs decides whether a failed attempt is retried: the delay to
 * wait, or undefined to give up. attempt counts from 0.
 */
export function retryDelayMs(
  error: StockroomError,
  idempotent: boolean,
  attempt: number,
  policy: RetryPolicy,
  random: () => number = Math.random,
): number | undefined {
  if (attempt + 1 >= policy.maxAttempts) return undefined;
  switch (error.code) {
    case Code.ResourceExhausted: {
      const delay = (error as RateLimitedError).retryDelayMs;
      if (delay === undefined || delay > policy.maxRetryInfoDelayMs) return undefined;
      return delay + backoffMs(policy, attempt, random);
    }
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return idempotent ? backoffMs(policy, attempt, random) : undefined;
    default:
      return undefined;
  }
}

/** sleep waits ms, or rejects with the signal's reason as soon as it aborts; its timer never outlives it. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * abortReason is what an aborted call rejects with, as fetch does: the
 * signal's reason (a DOMException named "AbortError" for `controller.abort()`,
 * "TimeoutError" for `AbortSignal.timeout()`, or what was passed to abort),
 * or a DOMException AbortError for runtimes that keep no reason.
 */
export function abortReason(signal: AbortSignal): unknown {
  if (signal.reason !== undefined) return signal.reason;
  return new DOMException("This operation was aborted", "AbortError");
}
