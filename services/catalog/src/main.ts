/**
 * The catalog API process on its own (how Nomad runs it). The only file that
 * reads process.env. `npm start` instead runs every service in one process.
 */
import { startApi, stopOnSignals } from "@stockroom/common/app.ts";
import { parseApiConfig } from "@stockroom/common/config.ts";
import { catalogModule } from "./module.ts";

const config = parseApiConfig(process.env);
const api = await startApi({
  name: "stockroom-catalog",
  config,
  migrate: process.env["MIGRATE_ON_START"] === "true",
  modules: (db) => [catalogModule(db)],
});
api.log.info("listening", { url: api.server.url });
stopOnSignals(api.stop, api.log);
