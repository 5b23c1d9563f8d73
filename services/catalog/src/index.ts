/**
 * @stockroom/catalog: products, their rules, the product-write port every
 * package changes products through, and the audit trail.
 */
export * from "./domain.ts";
export { catalogModule, type CatalogModuleOptions } from "./module.ts";
export { lockProduct, lockProducts, writeProducts, type ChangeContext, type ProductWrite } from "./product-writes.ts";
export {
  catalogMigrations,
  findProducts,
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
