/**
 * follow keeps a server stream of a versioned resource (WatchBulkJob,
 * WatchOrder) going until the resource reaches the state the caller waits
 * for: when the stream ends early (a server draining for a deploy ends its
 * watches) or its connection drops, it opens it again with backoff; the
 * server answers a new watch with the resource as it is now, so a final
 * state reached meanwhile is never lost, and versions already seen are not
 * yielded twice. After reconnectForMs of failed attempts in a row it reads
 * the resource once more, yields it if it is new, and gives up.
 */
import { toStockroomError } from "./errors.ts";
import { abortReason, backoffMs, retryDelayMs, sleep, type RetryPolicy } from "./retry.ts";

export interface FollowOptions<T> {
  signal?: AbortSignal;
  /** How long to keep reconnecting while every attempt fails, in ms. Default 60,000 (a server restart). */
  reconnectForMs?: number;
  /** Stop at the first update for which this holds, instead of at a final state. */
  until?: (item: T) => boolean;
}

export interface Followed<R, T> {
  /** What the error names when following gives up, e.g. "watchOrder: could not follow order X". */
  what: string;
  retry: RetryPolicy;
  /** open starts a watch, given the last version yielded (-1: none); its responses carry the resource (or nothing, skipped). */
  open(signal: AbortSignal | undefined, lastVersion: bigint): AsyncIterable<R>;
  /** resourceOf picks the resource out of a response. */
  resourceOf(response: R): T | undefined;
  /** read reads the resource once, outside a watch. */
  read(signal: AbortSignal | undefined): Promise<T | undefined>;
  version(resource: T): bigint;
  /** isFinal: the resource will not change again (the default for until). */
  isFinal(resource: T): boolean;
}

/** Each new state of the resource, with the watch response that carried it (none when read outside a watch). */
export interface FollowedUpdate<R, T> {
  resource: T;
  response: R | undefined;
}

export async function* follow<R, T>(f: Followed<R, T>, options: FollowOptions<T> = {}): AsyncGenerator<FollowedUpdate<R, T>> {
  const { signal, reconnectForMs = 60_000, until = f.isFinal } = options;
  let lastVersion = -1n;
  let failingSince: number | undefined;
  for (let failures = 0; ; ) {
    try {
      for await (const response of f.open(signal, lastVersion)) {
        failures = 0;
        failingSince = undefined;
        const resource = f.resourceOf(response);
        if (!resource || f.version(resource) <= lastVersion) continue;
        lastVersion = f.version(resource);
        yield { resource, response };
        if (until(resource)) return;
      }
      // The stream ended without a final state (e.g. the server is draining): reconnect.
    } catch (e) {
      throwUnlessReconnectable(e, signal, f.retry);
    }
    failingSince ??= Date.now();
    if (Date.now() - failingSince > reconnectForMs) {
      const resource = await f.read(signal);
      if (resource && f.version(resource) > lastVersion) yield { resource, response: undefined };
      if (resource && until(resource)) return;
      throw new Error(`${f.what} for ${reconnectForMs} ms`);
    }
    await sleep(backoffMs(f.retry, failures++), signal);
  }
}

/**
 * throwUnlessReconnectable rethrows a failed stream's error unless opening
 * the stream again may cure it (an unavailable server, a dropped
 * connection): the caller's abort as its reason, anything final as a
 * StockroomError.
 */
export function throwUnlessReconnectable(e: unknown, signal: AbortSignal | undefined, retry: RetryPolicy): void {
  if (signal?.aborted) throw abortReason(signal);
  const error = toStockroomError(e);
  if (retryDelayMs(error, true, 0, retry) === undefined) throw error;
}
