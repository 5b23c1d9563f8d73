/**
 * BENCH_DOWNSTREAM=1 for bench:bulk: the outbox relay and the search
 * projector run in the bench process (as `npm start` runs them) on the
 * pipeline run's database, with their own event stream and search database,
 * from before the upload on. After the job's end the run waits for the
 * outbox to have no unpublished row (outbox drained) and then for the
 * projector to have no pending event (search caught up), and reports both
 * as seconds after the job's end.
 */
import { randomBytes } from "node:crypto";
import type { Pool, RowDataPacket } from "mysql2/promise";
import { createDatabase, dropDatabase, type CommonTables } from "@stockroom/common/db";
import type { NatsClient } from "@stockroom/common/nats";
import { createLogger } from "@stockroom/common/observe";
import { testDatabaseUrl } from "@stockroom/common/testing";
import { DEFAULT_EVENT_STREAM, DEFAULT_RELAY, startOutboxRelay, type EventStreamConfig, type EventTables } from "@stockroom/events";
import { DEFAULT_PROJECTOR, openSearchDatabase, startSearchProjector } from "@stockroom/search";
import { until } from "./bulk-processes.ts";
import { round } from "./stats.ts";

/** How long the run waits for the outbox to drain and for search to catch up, each. */
const DOWNSTREAM_TIMEOUT_MS = 15 * 60_000;

export interface DownstreamResult {
  /** Unpublished outbox rows when the job ended. */
  backlogAtEnd: number;
  /** Job end → no unpublished outbox row. */
  drainedS: number;
  /** Job end → the search projector has no pending event. */
  searchCaughtUpS: number;
  /** Event messages the relay published. */
  published: number;
}

export interface Downstream {
  /** finish waits for the outbox to drain and search to catch up after the job ended at jobEndAt (performance.now()). */
  finish(pool: Pool, jobEndAt: number): Promise<DownstreamResult>;
  stop(): Promise<void>;
}

/** unpublished counts the outbox rows the relay has not published yet. */
async function unpublished(pool: Pool): Promise<number> {
  const [rows] = await pool.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL");
  return Number(rows[0]!["n"]);
}

/** startDownstream starts a relay and a projector for the database at databaseUrl; see the module comment. */
export async function startDownstream(databaseUrl: string, nats: NatsClient, id: string): Promise<Downstream> {
  const log = createLogger("bench-bulk-downstream", "warn");
  const events: EventStreamConfig = {
    ...DEFAULT_EVENT_STREAM,
    stream: `BENCH_BULKEV_${id}`,
    subjectPrefix: `bench_bulkev_${id}`,
    maxAgeMs: 3600_000,
  };
  const db = createDatabase<CommonTables & EventTables>({ url: databaseUrl, poolSize: 4 });
  const searchUrl = testDatabaseUrl(`bench_bulk_search_${randomBytes(2).toString("hex")}`);
  const searchDb = await openSearchDatabase({ url: searchUrl, poolSize: 20, migrate: true });
  const relay = await startOutboxRelay({ db, nats, events, config: DEFAULT_RELAY, log });
  const projector = await startSearchProjector({ db: searchDb, nats, events, config: DEFAULT_PROJECTOR, log });
  let stopped = false;
  return {
    async finish(pool, jobEndAt) {
      const backlogAtEnd = await unpublished(pool);
      await until("the outbox to drain", async () => ((await unpublished(pool)) === 0 ? true : undefined), DOWNSTREAM_TIMEOUT_MS);
      const drainedAt = performance.now();
      await until(
        "search to catch up",
        async () => ((await projector.lag()).pendingEvents === 0 ? true : undefined),
        DOWNSTREAM_TIMEOUT_MS,
      );
      const caughtUpAt = performance.now();
      return {
        backlogAtEnd,
        drainedS: round((drainedAt - jobEndAt) / 1000),
        searchCaughtUpS: round((caughtUpAt - jobEndAt) / 1000),
        published: relay.stats().published,
      };
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await projector.stop();
      await relay.stop();
      await db.destroy();
      await searchDb.destroy();
      await dropDatabase(searchUrl);
      await nats.jsm.streams.delete(events.stream).catch(() => {});
    },
  };
}
