/**
 * Watch hubs: one poller per process for every open watch stream of a kind
 * (WatchOrder, WatchBulkJob). Each stream used to read its row on its own
 * every interval: 2,000 WatchOrder streams open at checkout cost about
 * 10,000 statements a second and 60% of a core of the process, growing with
 * every stream. Now a stream waiting for its row to move registers here, and
 * each round reads the watched rows of a merchant with one statement
 * (`id IN (…)`, up to `batch` ids each; one merchant per statement, so one
 * shard on Vitess): the cost follows the merchants with open watches, not
 * the streams, and streams watching the same row share its read. A round
 * starts intervalMs after the previous one ended, and only while some
 * stream waits.
 *
 * A failed read ends the waits of that merchant's streams with its error, as
 * a failed read of their own did; other merchants' waits go on. A row gone
 * from the table ends its waits with `gone`'s error.
 */

export interface WatchHub<T> {
  /**
   * changed resolves with the row once its version differs from version,
   * or with undefined once signal is aborted; it rejects if the read fails
   * or the row is gone.
   */
  changed(merchantId: string, id: string, version: number, signal: AbortSignal): Promise<T | undefined>;
}

export interface WatchHubOptions<T> {
  /** Reads some of a merchant's rows by id (one statement), keyed by id; an id without a row is left out. */
  read(merchantId: string, ids: readonly string[]): Promise<Map<string, T>>;
  versionOf(row: T): number;
  /** The error of a watch whose row is gone. */
  gone(id: string): Error;
  /** The pause between two rounds. */
  intervalMs: number;
  /** The most ids one statement reads (default 500). */
  batch?: number;
}

/** Merchants read at once in a round: a few of the pool's connections, never all. */
const PARALLEL = 4;

interface Waiter<T> {
  version: number;
  resolve: (row: T) => void;
  reject: (error: unknown) => void;
}

export function createWatchHub<T>(options: WatchHubOptions<T>): WatchHub<T> {
  const { read, versionOf, gone, intervalMs } = options;
  const batch = options.batch ?? 500;
  /** merchant id → row id → the streams waiting on it. */
  const waiting = new Map<string, Map<string, Set<Waiter<T>>>>();
  let scheduled = false;

  const remove = (merchantId: string, id: string, waiter: Waiter<T>) => {
    const ofMerchant = waiting.get(merchantId);
    const ofRow = ofMerchant?.get(id);
    if (!ofMerchant || !ofRow) return;
    ofRow.delete(waiter);
    if (ofRow.size === 0) ofMerchant.delete(id);
    if (ofMerchant.size === 0) waiting.delete(merchantId);
  };

  /** readMerchant reads one merchant's watched rows and settles the waits they decide. */
  const readMerchant = async (merchantId: string, rows: Map<string, Set<Waiter<T>>>) => {
    const ids = [...rows.keys()];
    try {
      for (let i = 0; i < ids.length; i += batch) {
        const slice = ids.slice(i, i + batch);
        const found = await read(merchantId, slice);
        for (const id of slice) {
          const row = found.get(id);
          for (const waiter of [...(rows.get(id) ?? [])]) {
            if (row !== undefined && versionOf(row) === waiter.version) continue;
            remove(merchantId, id, waiter);
            if (row === undefined) waiter.reject(gone(id));
            else waiter.resolve(row);
          }
        }
      }
    } catch (error) {
      for (const [id, waiters] of rows)
        for (const waiter of [...waiters]) {
          remove(merchantId, id, waiter);
          waiter.reject(error);
        }
    }
  };

  const round = async () => {
    const merchants = [...waiting];
    for (let i = 0; i < merchants.length; i += PARALLEL)
      await Promise.all(merchants.slice(i, i + PARALLEL).map(([merchantId, rows]) => readMerchant(merchantId, rows)));
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
    changed(merchantId, id, version, signal) {
      if (signal.aborted) return Promise.resolve(undefined);
      return new Promise((resolve, reject) => {
        const onAbort = () => {
          remove(merchantId, id, waiter);
          resolve(undefined);
        };
        const waiter: Waiter<T> = {
          version,
          resolve: (row) => {
            signal.removeEventListener("abort", onAbort);
            resolve(row);
          },
          reject: (error) => {
            signal.removeEventListener("abort", onAbort);
            reject(error);
          },
        };
        signal.addEventListener("abort", onAbort, { once: true });
        const ofMerchant = waiting.get(merchantId) ?? new Map<string, Set<Waiter<T>>>();
        waiting.set(merchantId, ofMerchant);
        const ofRow = ofMerchant.get(id) ?? new Set<Waiter<T>>();
        ofMerchant.set(id, ofRow);
        ofRow.add(waiter);
        schedule();
      });
    },
  };
}
