/**
 * Dependency probes: a process is ready only while MySQL and NATS answer.
 * Every everyMs each check runs with a short timeout; after
 * failuresToDown consecutive failures the dependency is down and the
 * process reports NOT_SERVING (grpc.health.v1, /readyz), so Consul stops
 * routing calls to it instead of letting them fail; the first success
 * brings it back.
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Connection } from "mysql2/promise";
import type { Logger } from "./log.ts";
import type { Metrics } from "./metrics.ts";
import { withTimeout } from "../timeout.ts";
import { mysqlConnection } from "../db/database.ts";

export interface DependencyCheck {
  /** The dependency's name: "mysql", "nats". */
  name: string;
  /** check resolves when the dependency answered within timeoutMs, and throws otherwise. */
  check(timeoutMs: number): Promise<void>;
  close?(): Promise<void>;
}

/**
 * mysqlCheck runs `SELECT 1` on a connection of its own: through the pool,
 * a saturated pool would look like a dead server and take the process out
 * of rotation exactly when it is busiest. A failed connection is replaced
 * at the next check.
 */
export function mysqlCheck(url: string): DependencyCheck {
  let conn: Promise<Connection> | undefined;
  const drop = () => {
    const old = conn;
    conn = undefined;
    void old?.then(
      (c) => c.destroy(),
      () => {},
    );
  };
  return {
    name: "mysql",
    async check(timeoutMs) {
      try {
        conn ??= import("mysql2/promise").then(({ createConnection }) =>
          createConnection({ ...mysqlConnection(url), connectTimeout: timeoutMs }),
        );
        const c = await withTimeout(conn, timeoutMs);
        await c.query({ sql: "SELECT 1", timeout: timeoutMs });
      } catch (error) {
        drop();
        throw error;
      }
    },
    async close() {
      drop();
    },
  };
}

/**
 * natsCheck asks the server for a round trip (PING/PONG). While the client is
 * disconnected (it reconnects forever) the ping waits, so the timeout fails it.
 */
export function natsCheck(nc: NatsConnection): DependencyCheck {
  return {
    name: "nats",
    async check(timeoutMs) {
      if (nc.isClosed()) throw new Error("nats connection closed");
      const rtt = nc.rtt();
      rtt.catch(() => {}); // a ping outliving its timeout settles later
      await withTimeout(rtt, timeoutMs);
    },
  };
}

export interface DependencyProbes {
  /** True while every dependency is up. */
  readonly up: boolean;
  /** The dependencies that are down now. */
  readonly down: readonly string[];
  stop(): Promise<void>;
}

/** startDependencyProbes runs the checks until stop(); see the module comment. */
export function startDependencyProbes(options: {
  checks: DependencyCheck[];
  everyMs: number;
  timeoutMs?: number;
  /** Consecutive failures before a dependency counts as down (default 2: one slow answer is not an outage). */
  failuresToDown?: number;
  /** Called with whether all are up, whenever that changes. */
  onChange?: (up: boolean, down: readonly string[]) => void;
  metrics?: Metrics;
  log?: Logger;
}): DependencyProbes {
  const timeoutMs = options.timeoutMs ?? Math.max(200, Math.min(1_000, options.everyMs));
  const failuresToDown = options.failuresToDown ?? 2;
  const failures = new Map(options.checks.map((c) => [c.name, 0]));
  let down: string[] = [];
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  for (const c of options.checks) options.metrics?.dependencyUp.set({ dependency: c.name }, 1);

  const round = async () => {
    await Promise.all(
      options.checks.map(async (c) => {
        try {
          await c.check(timeoutMs);
          failures.set(c.name, 0);
          options.metrics?.dependencyUp.set({ dependency: c.name }, 1);
        } catch (error) {
          const n = (failures.get(c.name) ?? 0) + 1;
          failures.set(c.name, n);
          if (n === failuresToDown) options.log?.warn("dependency unreachable", { dependency: c.name, error });
          if (n >= failuresToDown) options.metrics?.dependencyUp.set({ dependency: c.name }, 0);
        }
      }),
    );
    const now = options.checks.filter((c) => (failures.get(c.name) ?? 0) >= failuresToDown).map((c) => c.name);
    if (now.join() !== down.join() && !stopped) {
      down = now;
      if (now.length === 0) options.log?.info("dependencies reachable again");
      options.onChange?.(now.length === 0, now);
    }
  };
  let running: Promise<void> = Promise.resolve();
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = round().finally(schedule);
    }, options.everyMs);
    timer.unref();
  };
  schedule();

  return {
    get up() {
      return down.length === 0;
    },
    get down() {
      return down;
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
      await Promise.all(options.checks.map((c) => c.close?.()));
    },
  };
}
