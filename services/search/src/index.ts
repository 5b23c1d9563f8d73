/** @stockroom/search: the package's public face; everything else is internal. */
export { parseSearchConfig } from "./config.ts";
export { entryFromProduct } from "./convert.ts";
export { searchModule } from "./module.ts";
export { DEFAULT_PROJECTOR, type SearchProjector, projectionLag, startSearchProjector } from "./projector.ts";
export { type BackgroundReindex, reindexMerchant, reindexOlderTerms, type ReindexProgress } from "./reindex.ts";
export { openSearchDatabase, searchMigrations } from "./store.ts";
export { createSearchWaiter } from "./waiter.ts";
