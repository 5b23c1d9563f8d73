/**
 * The catalog API process on its own (how Nomad runs it): CatalogService,
 * NotificationService, through which merchants register their webhooks (the
 * dispatcher that sends them is its own process, @stockroom/notify's
 * dispatcher-main.ts), and ApiKeyService, the merchants' own API keys.
 * The only file that reads process.env. `npm start` instead runs every
 * service in one process.
 */
import { apiKeysModule, startApi, stopOnSignals } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { notifyModule, parseNotifyConfig } from "@stockroom/notify";
import { catalogModule } from "./module.ts";

const config = parseApiConfig(process.env);
// WEBHOOK_ALLOW_PRIVATE_TARGETS and WEBHOOK_MAX_AGE_MS (a replayed dead letter's budget) must agree with the dispatcher's.
const notify = parseNotifyConfig(process.env);
const api = await startApi({
  name: "stockroom-catalog",
  config,
  migrate: process.env["MIGRATE_ON_START"] === "true",
  modules: (db, { log }) => [catalogModule(db), notifyModule(db, notify), apiKeysModule(db, { log })],
});
api.log.info("listening", { url: api.server.url });
stopOnSignals(api.stop, api.log);
