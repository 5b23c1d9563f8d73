/**
 * @stockroom/catalog: products and their rules, the product-write port every
 * package changes products through, the product reads other packages build
 * on, the audit trail and the CatalogService API. Everything else in the
 * package is internal.
 */
export * from "./domain.ts";
export {
  lockProduct,
  lockProducts,
  writeProducts,
  writeStockSeries,
  type ChangeContext,
  type ProductWrite,
  type StockMove,
  type StockSeries,
} from "./product-writes.ts";
export {
  catalogMigrations,
  findProduct,
  listMerchantChanges,
  listProducts,
  rowToProduct,
  type CatalogDb,
  type CatalogTables,
  type CatalogTx,
  type ChangeType,
  type ProductChangeRow,
  type ProductRow,
  type SourceKind,
} from "./store.ts";
export { APPEND_ONLY_TABLES, sealAuditChains, verifyAuditChain, type SealOptions } from "./audit.ts";
export { STATUS_TO_PROTO } from "./convert.ts";
export { catalogModule, type CatalogModuleOptions } from "./module.ts";
export { createCatalogService } from "./rpc.ts";
