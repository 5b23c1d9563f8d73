import { taskFailures } from "@stockroom/common";
import { forEachShard, inTransaction } from "@stockroom/common/db";
import type { Logger, Metrics } from "@stockroom/common/observe";
import { expireOrder } from "./lifecycle.ts";
import { findDueOrders, type OrderDb } from "./store.ts";
import { orderOutcomes } from "./metrics.ts";

/**
 * sweepExpiredOrders reads up to `batch` unpaid orders past their expiry
 * and expires each in its own one-merchant transaction (see expireOrder:
 * safe with any number of sweepers racing). It returns how many it read and
 * how many it expired itself. Finding them names no merchant, so it runs
 * against each shard target in turn (forEachShard: on Vitess each shard on
 * its own, no scatter; `batch` per shard), and each order is expired there.
 */
export async function sweepExpiredOrders(db: OrderDb, batch: number, now = new Date()): Promise<{ due: number; expired: number }> {
  const perShard = await forEachShard(db, (shardDb) => sweepShard(shardDb, batch, now));
  return { due: perShard.reduce((n, r) => n + r.due, 0), expired: perShard.reduce((n, r) => n + r.expired, 0) };
}

async function sweepShard(db: OrderDb, batch: number, now: Date): Promise<{ due: number; expired: number }> {
  const due = await findDueOrders(db, now, batch);
  let expired = 0;
  for (const ref of due) {
    if (await inTransaction(db, (trx) => expireOrder(trx, ref, now))) expired++;
  }
  return { due: due.length, expired };
}

export interface OrderSweeper {
  /** stop waits for the sweep under way, then stops. */
  stop(): Promise<void>;
}

/**
 * startOrderSweeper returns expired reservations' stock every `everyMs`.
 * Run it in any number of processes (`npm start` and each orders process
 * run one). A full batch that made progress is followed at once by another,
 * so a backlog drains without waiting for the next tick.
 */
export function startOrderSweeper(deps: {
  db: OrderDb;
  log: Logger;
  everyMs: number;
  batch: number;
  /** The process's metrics: expired orders are counted. */
  metrics?: Pick<Metrics, "registry">;
}): OrderSweeper {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const failures = taskFailures(deps.log, "order sweep");
  const sweep = async () => {
    try {
      for (;;) {
        const { due, expired } = await sweepExpiredOrders(deps.db, deps.batch);
        if (expired > 0) {
          deps.log.info("orders expired", { expired });
          if (deps.metrics) orderOutcomes(deps.metrics.registry).inc({ outcome: "expired" }, expired);
        }
        if (stopped || due < deps.batch || expired === 0) break;
      }
      failures.succeeded();
    } catch (error) {
      failures.failed(error);
    }
    if (!stopped) timer = setTimeout(() => (running = sweep()), failures.delayMs(deps.everyMs)).unref();
  };
  timer = setTimeout(() => (running = sweep()), deps.everyMs).unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
