import { randomBytes } from "node:crypto";
import type { Client } from "@connectrpc/connect";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { catalogModule, type CatalogDb, type CatalogTables } from "@stockroom/catalog";
import { createMerchant } from "@stockroom/common/rpc";
import {
  DEFAULT_EVENT_STREAM,
  type EventStreamConfig,
  DEFAULT_RELAY,
  startOutboxRelay,
  type OutboxRelay,
  type RelayConfig,
} from "@stockroom/events";
import { createLogger } from "@stockroom/common/observe";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { startTestApi, testDatabaseUrl, type TestApi, type TestMerchant, dropTestDatabase } from "@stockroom/common/testing";
import { searchModule } from "../src/module.ts";
import { DEFAULT_PROJECTOR, projectionLag, startSearchProjector, type SearchProjector } from "../src/projector.ts";
import { openSearchDatabase, type SearchDb } from "../src/store.ts";
import { createSearchWaiter } from "../src/waiter.ts";

export { CatalogService, SearchService };
export { productInit, writeInOneTransaction } from "@stockroom/catalog/testing";
/** How a row holds its text, for tests that compare rows with the catalog. */
export { documentTerms, merchantTag, searchTerms } from "../src/domain.ts";
export { entryText, type SearchDocumentRow, searchProducts, type TextPlan, upsertEntries } from "../src/store.ts";

export const log = createLogger("search-test", (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent");

/** Relays and projectors in tests poll fast, so waits stay short. */
export const TEST_RELAY: RelayConfig = { ...DEFAULT_RELAY, pollMs: 5, failureBackoffMs: 100 };

export interface SearchHarness {
  api: TestApi;
  db: CatalogDb;
  searchDb: SearchDb;
  /** The projection's database, for a process of its own (tools/reindex.ts). */
  searchUrl: string;
  nats: NatsClient;
  /** This file's own stream and subject prefix. */
  events: EventStreamConfig;
  startRelay(config?: Partial<RelayConfig>): Promise<OutboxRelay>;
  startProjector(): Promise<SearchProjector>;
  /** newMerchant adds a merchant only the calling test uses. */
  newMerchant(): Promise<TestMerchant>;
  catalog(merchant: TestMerchant): Client<typeof CatalogService>;
  search(merchant: TestMerchant): Client<typeof SearchService>;
  close(): Promise<void>;
}

/**
 * startSearchHarness runs the catalog and search APIs on fresh databases
 * (the catalog's and the projection's), with this file's own event stream.
 * Relays and projectors are started by the tests, as many as they need.
 */
export async function startSearchHarness(name: string, options: { reindexPageSize?: number } = {}): Promise<SearchHarness> {
  const suffix = randomBytes(4).toString("hex");
  const events: EventStreamConfig = {
    ...DEFAULT_EVENT_STREAM,
    stream: `EVENTS_${name.toUpperCase()}_${suffix}`,
    subjectPrefix: `t_${suffix}`,
    maxAgeMs: 600_000,
  };
  const nats = await connectNats({ servers: process.env["TEST_NATS_URL"] ?? "127.0.0.1:4222", name: `search-${name}-test` });
  const searchUrl = testDatabaseUrl(`search_${name}`);
  const searchDb = await openSearchDatabase({ url: searchUrl, poolSize: 10, migrate: true });
  const api = await startTestApi<CatalogTables>(name, (db) => [
    catalogModule(db, { searchWaiter: createSearchWaiter(searchDb) }),
    searchModule(searchDb, {
      catalogDb: db,
      lag: () => projectionLag(nats.jsm, events.stream, DEFAULT_PROJECTOR.durable),
      reindexPageSize: options.reindexPageSize,
    }),
  ]);
  const stoppers: (() => Promise<void>)[] = [];
  // The catalog's database, with its outbox.
  const db = api.api.db;
  return {
    api,
    db,
    searchDb,
    searchUrl,
    nats,
    events,
    async startRelay(config = {}) {
      const relay = await startOutboxRelay({ db, nats, events, config: { ...TEST_RELAY, ...config }, log });
      stoppers.push(() => relay.stop());
      return relay;
    },
    async startProjector() {
      const projector = await startSearchProjector({ db: searchDb, nats, events, config: DEFAULT_PROJECTOR, log });
      stoppers.push(() => projector.stop());
      return projector;
    },
    async newMerchant() {
      const { merchantId, apiKey } = await createMerchant(api.api.db, "Test merchant");
      return { merchantId, apiKey };
    },
    catalog: (merchant) => api.client(CatalogService, merchant),
    search: (merchant) => api.client(SearchService, merchant),
    async close() {
      await Promise.all(stoppers.map((stop) => stop()));
      await nats.jsm.streams.delete(events.stream).catch(() => {});
      await nats.close();
      await api.close();
      await searchDb.destroy();
      await dropTestDatabase(searchUrl);
    },
  };
}

/** unpublished counts the outbox events the relay has not yet published. */
export async function unpublished(h: Pick<SearchHarness, "db">): Promise<number> {
  const { n } = await h.db
    .selectFrom("outbox_events")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("published_at", "is", null)
    .executeTakeFirstOrThrow();
  return Number(n);
}
