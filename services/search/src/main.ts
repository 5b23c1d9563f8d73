/**
 * The search process (how Nomad runs it; `npm start` runs search in the one
 * process): SearchService on one port, and the projector applying catalog
 * events. Any number can run; they share the projector's durable consumer.
 * DATABASE_URL is the catalog's database (API keys, and the reindex reads
 * products there); SEARCH_DATABASE_URL is the projection's own. The only
 * file of search that reads process.env.
 */
import { startApi, stopOnSignals } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { parseEventStreamConfig } from "@stockroom/events";
import { connectNats } from "@stockroom/common/nats";
import { parseSearchConfig } from "./config.ts";
import { searchModule } from "./module.ts";
import { projectionLag, startSearchProjector } from "./projector.ts";
import { openSearchDatabase } from "./store.ts";

const config = parseApiConfig(process.env);
const search = parseSearchConfig(process.env);
const events = parseEventStreamConfig(process.env);
const searchDb = await openSearchDatabase({
  url: search.databaseUrl,
  poolSize: search.dbPoolSize,
  migrate: process.env["MIGRATE_ON_START"] === "true",
});
const nats = await connectNats({ servers: config.natsUrl.split(","), name: "stockroom-search", security: config.natsSecurity });
const api = await startApi({
  name: "stockroom-search",
  config,
  migrate: false,
  modules: (db) => [searchModule(searchDb, { catalogDb: db, lag: () => projectionLag(nats.jsm, events.stream, search.projector.durable) })],
});
const projector = await startSearchProjector({ db: searchDb, nats, events, config: search.projector, log: api.log });
api.log.info("listening", { url: api.server.url });
stopOnSignals(async () => {
  await api.server.close();
  await projector.stop();
  await api.stop();
  await nats.close();
  await searchDb.destroy();
}, api.log);
