/**
 * Shard targets for the background scans (issue 12). The services' own
 * statements each name one merchant, so vtgate routes them to that
 * merchant's shard. Maintenance scans (the bulk reconciler and pruner, the
 * audit sealer, the order sweeper, the webhook due-scan and sweeps, the
 * outbox relay, idempotency pruning) look for work across merchants: through
 * vtgate such a statement would scatter to every shard. Instead each process
 * finds the shards and runs its scans against each one on its own:
 *
 *   await forEachShard(db, (shardDb) => reconcile(shardDb, …));
 *
 * - On Vitess (isVitessCached: vtgate answers `@@version` with `…-Vitess`), `SHOW
 *   VITESS_SHARDS` lists the shards of the URL's keyspace, and each target is
 *   a small pool whose connections use the database `<keyspace>/<shard>`
 *   (e.g. `stockroom/-80`): vtgate sends every statement on them to that
 *   shard's primary as it is, no routing, no scatter. The shards are
 *   discovered again every `rediscoverMs` (a resharding adds or removes
 *   some); pools are opened on first use, kept, and closed with db.
 * - On MySQL or MariaDB (or a URL that already names one shard) there is one
 *   target: db itself.
 *
 * A shard target runs anything the scan needs: reads, per-merchant writes and
 * transactions (a row found on a shard belongs to a merchant of that shard).
 * Named locks are the exception: vttablet refuses GET_LOCK outside a reserved
 * connection, so take those on db (vtgate's lock session), e.g. one lock per
 * shard named after it (the outbox relay does).
 */
import { sql, type Kysely } from "kysely";
import { createDatabase, databaseOptions, isVitessCached, onDestroy } from "./database.ts";

export interface ShardTarget<DB> {
  /** `keyspace/shard` on Vitess (e.g. `stockroom/-80`); the database name on MySQL/MariaDB. */
  name: string;
  /** Whether this target is one Vitess shard (false: db itself, a whole MySQL/MariaDB database). */
  vitess: boolean;
  db: Kysely<DB>;
}

export interface ShardTargetOptions {
  /** The database URL when db was not made by createDatabase (which remembers its own). */
  url?: string;
  /** How long a discovered shard list is used before asking vtgate again (default 60 s). */
  rediscoverMs?: number;
  /** Connections per shard target's pool (default 2: the scans run one statement at a time per shard). */
  poolSize?: number;
}

export const SHARD_REDISCOVER_MS = 60_000;

interface ShardSet {
  keyspace: string;
  pools: Map<string, Kysely<unknown>>;
  list?: ShardTarget<unknown>[];
  discoveredAt: number;
  discovering?: Promise<ShardTarget<unknown>[]>;
  closed: boolean;
}

const sets = new WeakMap<object, ShardSet>();

/**
 * shardTargets returns the shard targets of db's keyspace (one target, db
 * itself, outside Vitess), detecting Vitess once and caching the list for
 * rediscoverMs.
 */
export async function shardTargets<DB>(db: Kysely<DB>, options: ShardTargetOptions = {}): Promise<ShardTarget<DB>[]> {
  let set = sets.get(db);
  if (!set) {
    const url = options.url ?? databaseOptions(db)?.url;
    // `keyspace@primary` names a tablet type; `keyspace/shard` is already one shard.
    const keyspace = url ? decodeURIComponent(new URL(url).pathname.slice(1)).replace(/@.*$/, "") : "";
    set = { keyspace, pools: new Map(), discoveredAt: 0, closed: false };
    sets.set(db, set);
    const own = set;
    onDestroy(db, async () => {
      own.closed = true;
      const pools = [...own.pools.values()];
      own.pools.clear();
      await Promise.allSettled(pools.map((p) => p.destroy()));
    });
  }
  const rediscoverMs = options.rediscoverMs ?? SHARD_REDISCOVER_MS;
  if (set.list && (set.list[0]?.db === db || Date.now() - set.discoveredAt < rediscoverMs)) return set.list as ShardTarget<DB>[];
  set.discovering ??= discover(db as Kysely<unknown>, set, options).finally(() => (set.discovering = undefined));
  return (await set.discovering) as ShardTarget<DB>[];
}

async function discover(db: Kysely<unknown>, set: ShardSet, options: ShardTargetOptions): Promise<ShardTarget<unknown>[]> {
  const vitess = await isVitessCached(db);
  // Outside Vitess, or on a URL that already names one shard: db is the one target.
  if (!vitess || set.keyspace.includes("/")) {
    const name = set.keyspace || ((await sql<{ name: string | null }>`SELECT DATABASE() AS name`.execute(db)).rows[0]?.name ?? "");
    set.list = [{ name, vitess, db }];
    set.discoveredAt = Date.now();
    return set.list;
  }
  if (!set.keyspace) {
    const { rows } = await sql<{ name: string | null }>`SELECT DATABASE() AS name`.execute(db);
    set.keyspace = rows[0]?.name ?? "";
  }
  const { rows } = await sql<Record<string, string>>`SHOW VITESS_SHARDS`.execute(db);
  const names = rows
    .map((row) => String(Object.values(row)[0]))
    .filter((name) => name.startsWith(`${set.keyspace}/`))
    .sort();
  if (names.length === 0) throw new Error(`SHOW VITESS_SHARDS lists no shard of keyspace "${set.keyspace}"`);
  const parent = databaseOptions(db);
  const url = options.url ?? parent?.url;
  if (!url) throw new Error("shardTargets: a database not made by createDatabase needs options.url");
  const list: ShardTarget<unknown>[] = [];
  for (const name of names) {
    let pool = set.pools.get(name);
    if (!pool && !set.closed) {
      const target = new URL(url);
      target.pathname = `/${encodeURIComponent(name)}`;
      pool = createDatabase<unknown>({ url: target.toString(), poolSize: options.poolSize ?? 2, observe: parent?.observe });
      set.pools.set(name, pool);
    }
    if (pool) list.push({ name, vitess: true, db: pool });
  }
  // A shard gone after a resharding: its pool closes (a scan still running on it fails and runs again on the new shards).
  for (const [name, pool] of set.pools) {
    if (!names.includes(name)) {
      set.pools.delete(name);
      void pool.destroy().catch(() => {});
    }
  }
  set.list = list;
  set.discoveredAt = Date.now();
  return list;
}

/** ShardScanError: the scan failed on some shards (it ran on all); errors names each. */
export class ShardScanError extends Error {
  override name = "ShardScanError";
  readonly errors: { shard: string; error: unknown }[];
  constructor(errors: { shard: string; error: unknown }[]) {
    super(`scan failed on ${errors.map((e) => `${e.shard} (${(e.error as Error)?.message ?? String(e.error)})`).join(", ")}`, {
      cause: errors[0]?.error,
    });
    this.errors = errors;
  }
}

/**
 * forEachShard runs fn against each shard target of db (see shardTargets),
 * `concurrency` shards at a time (default 1: background work, gently), and
 * returns the results in shard order. A shard whose scan fails does not stop
 * the others; the failures are thrown together afterwards (ShardScanError).
 */
export async function forEachShard<DB, T>(
  db: Kysely<DB>,
  fn: (shardDb: Kysely<DB>, target: ShardTarget<DB>) => Promise<T>,
  options: ShardTargetOptions & { concurrency?: number; signal?: AbortSignal } = {},
): Promise<T[]> {
  const targets = await shardTargets(db, options);
  const results = new Array<T>(targets.length);
  const errors: { shard: string; error: unknown }[] = [];
  let next = 0;
  const lane = async () => {
    while (next < targets.length && !options.signal?.aborted) {
      const i = next++;
      const target = targets[i]!;
      try {
        results[i] = await fn(target.db, target);
      } catch (error) {
        errors.push({ shard: target.name, error });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency ?? 1, targets.length)) }, lane));
  if (errors.length === 1 && targets.length === 1) throw errors[0]!.error;
  if (errors.length > 0) throw new ShardScanError(errors);
  return results;
}
