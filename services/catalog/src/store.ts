import path from "node:path";
import type { Kysely, Selectable, Transaction } from "kysely";
import {
  CHECK_VIOLATIONS,
  ER_BAD_NULL_ERROR,
  insertRows,
  jsonColumn,
  mysqlErrno,
  type MigrationSet,
  deferWrite,
  runStatement,
  type CommonTables,
} from "@stockroom/common/db";
import type { EventTables } from "@stockroom/events";
import type { Product, ProductStatus } from "./domain.ts";

/** catalogMigrations is the folder of the catalog's own tables. */
export const catalogMigrations: MigrationSet = {
  name: "catalog",
  folder: path.join(import.meta.dirname, "..", "migrations"),
};

export interface ProductRow {
  merchant_id: string;
  sku: string;
  product_id: string;
  title: string;
  description: string;
  price_minor: number;
  currency: string;
  stock: number;
  status: ProductStatus;
  attributes: string;
  /** The columns added by the 2026-12 expand migration: NULL means not set (gtin, brand: ""). */
  gtin: string | null;
  brand: string | null;
  compare_at_minor: number | string | null;
  weight_grams: number | null;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export type ChangeType = "created" | "updated" | "deleted";
export type SourceKind = "api" | "bulk_job" | "order" | "rollback";

export interface ProductChangeRow {
  merchant_id: string;
  change_id: string;
  product_id: string;
  sku: string;
  change_type: ChangeType;
  version: number;
  changed_fields: string;
  before_state: string | null;
  after_state: string | null;
  actor: string;
  source_kind: SourceKind;
  source_ref: string;
  request_id: string;
  reason: string;
  created_at: Date;
  /**
   * What before_state and after_state hold (convert.ts AUDIT_FORMAT): 1, whole
   * products (rows from before 2026-12, the column's default); 2, the changed fields.
   */
  format: number;
}

/**
 * AuditSealColumns are the audit chain's columns of product_changes: seal_seq
 * 0 and zero hashes until the sealer (audit.ts) fills them (NULL in rows
 * written before 2026_12_04_140000 and 150000); writers never set them.
 */
export interface AuditSealColumns {
  seal_seq: number | string | null;
  prev_hash: Buffer | null;
  row_hash: Buffer | null;
}

/** AuditChainHeadRow is the last sealed position of one merchant's audit chain. */
export interface AuditChainHeadRow {
  merchant_id: string;
  seal_seq: number | string;
  head_hash: Buffer;
  sealed_at: Date;
}

export interface CatalogTables extends CommonTables, EventTables {
  products: ProductRow;
  product_changes: ProductChangeRow & AuditSealColumns;
  audit_chain_heads: AuditChainHeadRow;
}

export type CatalogDb = Kysely<CatalogTables>;
export type CatalogTx = Transaction<CatalogTables>;

export function rowToProduct(row: Selectable<ProductRow>): Product {
  return {
    id: row.product_id,
    sku: row.sku,
    title: row.title,
    description: row.description,
    priceMinor: Number(row.price_minor),
    currency: row.currency,
    stock: row.stock,
    status: row.status,
    attributes: jsonColumn<Record<string, string>>(row.attributes),
    gtin: row.gtin ?? "",
    brand: row.brand ?? "",
    compareAtMinor: row.compare_at_minor === null ? null : Number(row.compare_at_minor),
    weightGrams: row.weight_grams,
    version: Number(row.version),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function productToRow(merchantId: string, p: Product): ProductRow {
  return {
    merchant_id: merchantId,
    sku: p.sku,
    product_id: p.id,
    title: p.title,
    description: p.description,
    price_minor: p.priceMinor,
    currency: p.currency,
    stock: p.stock,
    status: p.status,
    attributes: JSON.stringify(p.attributes),
    gtin: p.gtin === "" ? null : p.gtin,
    brand: p.brand === "" ? null : p.brand,
    compare_at_minor: p.compareAtMinor,
    weight_grams: p.weightGrams,
    version: p.version,
    created_at: p.createdAt,
    updated_at: p.updatedAt,
  };
}

/**
 * The per-call statements (a product's read and lock here, its write and
 * stock move below) are written once, not built and compiled by Kysely on
 * every call (runStatement).
 */
const SELECT_PRODUCT = "select * from `products` where `merchant_id` = ? and `sku` = ?";
const LOCK_PRODUCT = `${SELECT_PRODUCT} for update`;

/** findProduct reads one product by SKU; forUpdate locks the row for the transaction. */
export async function findProduct(
  db: CatalogDb | CatalogTx,
  merchantId: string,
  sku: string,
  forUpdate = false,
): Promise<Product | undefined> {
  const { rows } = await runStatement<ProductRow>(db, forUpdate ? LOCK_PRODUCT : SELECT_PRODUCT, [merchantId, sku]);
  return rows[0] && rowToProduct(rows[0]);
}

/** findProductById reads one product by its id. */
export async function findProductById(db: CatalogDb, merchantId: string, id: string): Promise<Product | undefined> {
  const row = await db
    .selectFrom("products")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("product_id", "=", id)
    .executeTakeFirst();
  return row && rowToProduct(row);
}

/** findProducts reads the products with the given SKUs in SKU order (missing ones are absent); forUpdate locks them. */
export async function findProducts(
  db: CatalogDb | CatalogTx,
  merchantId: string,
  skus: string[],
  forUpdate: boolean | "skip locked" = false,
): Promise<Product[]> {
  if (skus.length === 0) return [];
  const lock = forUpdate === "skip locked" ? " for update skip locked" : forUpdate ? " for update" : "";
  const text = `select * from \`products\` where \`merchant_id\` = ? and \`sku\` in (${skus.map(() => "?").join(", ")}) order by \`sku\`${lock}`;
  const { rows } = await runStatement<ProductRow>(db, text, [merchantId, ...skus]);
  return rows.map(rowToProduct);
}

const UPSERT_COLUMNS = [
  "title",
  "description",
  "price_minor",
  "currency",
  "stock",
  "status",
  "attributes",
  "gtin",
  "brand",
  "compare_at_minor",
  "weight_grams",
  "version",
  "updated_at",
] as const;

/**
 * upsertProducts writes many products with one statement: new SKUs are
 * inserted, existing rows get every mutable column. Callers hold the rows'
 * locks (findProducts forUpdate), so the versions they computed are current.
 */
export async function upsertProducts(trx: CatalogTx, merchantId: string, products: Product[]): Promise<void> {
  if (products.length === 0) return;
  await insertRows(
    trx,
    "products",
    products.map((p) => productToRow(merchantId, p)),
    { onDuplicateKeyUpdate: UPSERT_COLUMNS },
  );
}

/** insertProducts adds many products with one statement; a taken SKU fails it with ER_DUP_ENTRY. */
export async function insertProducts(trx: CatalogTx, merchantId: string, products: Product[]): Promise<void> {
  await insertRows(
    trx,
    "products",
    products.map((p) => productToRow(merchantId, p)),
  );
}

/** UPDATE_LOCKED_PRODUCT sets every mutable column (UPSERT_COLUMNS) of the row at the expected version. */
const UPDATE_LOCKED_PRODUCT = `update \`products\` set ${UPSERT_COLUMNS.map((c) => `\`${c}\` = ?`).join(", ")} where \`merchant_id\` = ? and \`sku\` = ? and \`version\` = ?`;

/**
 * writeLockedProduct writes next over a row the transaction holds locked
 * (findProduct forUpdate), where expectedVersion is the version it read. The
 * write is deferred: it rides with the COMMIT, in one round trip.
 */
export async function writeLockedProduct(trx: CatalogTx, merchantId: string, next: Product, expectedVersion: number): Promise<void> {
  const row = productToRow(merchantId, next);
  await deferWrite(trx, {
    sql: UPDATE_LOCKED_PRODUCT,
    parameters: [...UPSERT_COLUMNS.map((c) => row[c]), merchantId, next.sku, expectedVersion],
  });
}

/**
 * UPDATE_IF_CURRENT writes every mutable column of a product only if the row
 * is still exactly the state the caller believes (the same product id at
 * the same version), without a read or a lock taken first. Otherwise its
 * stock is set to -1 (the first assignment, evaluated before the version
 * changes) and CHECK (stock >= 0) fails the statement. It matches no row if
 * the product is gone: the audit entry that follows it says so
 * (INSERT_CHANGE_IF_WRITTEN).
 */
/** The mutable columns UPDATE_IF_CURRENT sets as they are: all but the stock, which carries the guard. */
const UNGUARDED_COLUMNS = UPSERT_COLUMNS.filter((c) => c !== "stock");

const UPDATE_IF_CURRENT =
  "update `products` set `stock` = if(`version` = ? and `product_id` = ?, ?, -1), " +
  UNGUARDED_COLUMNS.map((c) => `\`${c}\` = ?`).join(", ") +
  " where `merchant_id` = ? and `sku` = ?";

/**
 * writeIfCurrent writes next over the row if it is still exactly before
 * (UPDATE_IF_CURRENT): for a writer that holds no lock and read nothing in
 * its transaction, only knows the state it last saw. Its audit entry must
 * go in with insertChangeIfWritten, after it in the same transaction (the
 * port's writeProducts and recordChanges do both). A failed statement
 * stops the statements queued behind it (the event, the idempotency key, the
 * COMMIT: deferred-writes.ts), so nothing of the change commits; isStaleWrite
 * tells the caller. Deferred: the whole change costs one round trip.
 */
export async function writeIfCurrent(trx: CatalogTx, merchantId: string, next: Product, before: Product): Promise<void> {
  const row = productToRow(merchantId, next);
  await deferWrite(trx, {
    sql: UPDATE_IF_CURRENT,
    parameters: [before.version, before.id, row.stock, ...UNGUARDED_COLUMNS.map((c) => row[c]), merchantId, next.sku],
  });
}

/**
 * CHANGE_COLUMNS are an audit row's content columns: what writers insert, and
 * the order in which the audit chain hashes them (audit.ts). Never reorder.
 */
export const CHANGE_COLUMNS = [
  "merchant_id",
  "change_id",
  "product_id",
  "sku",
  "change_type",
  "version",
  "changed_fields",
  "before_state",
  "after_state",
  "actor",
  "source_kind",
  "source_ref",
  "request_id",
  "reason",
  "created_at",
  "format",
] as const satisfies readonly (keyof ProductChangeRow)[];

/**
 * INSERT_CHANGE_IF_WRITTEN appends an audit entry whose product_id is read
 * from the product row at the entry's version: NULL, so the NOT NULL column
 * fails the statement, unless the write before it (UPDATE_IF_CURRENT) took
 * the row there. No other writer can have: the row at that version with
 * that id is this change's.
 */
const INSERT_CHANGE_IF_WRITTEN =
  `insert into \`product_changes\` (${CHANGE_COLUMNS.map((c) => `\`${c}\``).join(", ")}) values (` +
  CHANGE_COLUMNS.map((c) =>
    c === "product_id"
      ? "(select `product_id` from `products` where `merchant_id` = ? and `sku` = ? and `version` = ? and `product_id` = ?)"
      : "?",
  ).join(", ") +
  ")";

/** insertChangeIfWritten appends the audit entry of a writeIfCurrent (INSERT_CHANGE_IF_WRITTEN), deferred. */
export async function insertChangeIfWritten(trx: CatalogTx, row: ProductChangeRow): Promise<void> {
  await deferWrite(trx, {
    sql: INSERT_CHANGE_IF_WRITTEN,
    parameters: CHANGE_COLUMNS.flatMap((c) =>
      c === "product_id" ? [row.merchant_id, row.sku, row.version, row.product_id] : [row[c] as unknown],
    ),
  });
}

/** The errors a writeIfCurrent change fails with when the row is not the state it was written from. */
const STALE_WRITE_ERRORS = new Set([ER_BAD_NULL_ERROR, ...CHECK_VIOLATIONS]);

/** isStaleWrite tells whether a transaction failed because a writeIfCurrent found the row changed or gone. */
export function isStaleWrite(error: unknown): boolean {
  return STALE_WRITE_ERRORS.has(mysqlErrno(error) ?? 0);
}

const MOVE_STOCK =
  "update `products` set `stock` = `stock` + ?, `version` = `version` + ?, `updated_at` = ? where `merchant_id` = ? and `sku` = ? and `version` = ?";

/**
 * moveStockRow adds delta to a product's stock and bumps its version, if the
 * row is still at the version the caller read: `UPDATE … SET stock = stock +
 * ?, version = version + ? … WHERE … AND version = ?`. The caller holds the
 * row's lock and checked the stock under it; should that check ever be
 * wrong, the table's CHECK (stock >= 0) and the INT column's range fail the
 * statement, and with it the transaction's COMMIT (it is deferred and rides
 * with the COMMIT), so a stock move never half-happens: no audit entry or
 * event without the stock change, no order without its reservation. (A
 * `WHERE … AND stock >= ?` guard would instead match no row and let the
 * transaction commit its audit entry, event and order regardless.) versions
 * > 1 applies that many successive changes, summed into delta, at once
 * (writeStockSeries).
 */
export async function moveStockRow(
  trx: CatalogTx,
  merchantId: string,
  product: { sku: string; version: number },
  delta: number,
  at: Date,
  versions = 1,
): Promise<void> {
  await deferWrite(trx, { sql: MOVE_STOCK, parameters: [delta, versions, at, merchantId, product.sku, product.version] });
}

/** deleteProductRow removes the row if it is still at expectedVersion. */
export async function deleteProductRow(trx: CatalogTx, merchantId: string, sku: string, expectedVersion: number): Promise<boolean> {
  const result = await trx
    .deleteFrom("products")
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .where("version", "=", expectedVersion)
    .executeTakeFirst();
  return result.numDeletedRows === 1n;
}

export type ProductOrder = "sku" | "updated";

/** listProducts reads one keyset page, ordered by SKU or by (updated_at, sku). */
export async function listProducts(
  db: CatalogDb,
  merchantId: string,
  query: {
    order: ProductOrder;
    after?: { sku: string; updatedAt?: Date };
    updatedSince?: Date;
    status?: ProductStatus;
    limit: number;
  },
): Promise<Product[]> {
  let q = db.selectFrom("products").selectAll().where("merchant_id", "=", merchantId);
  if (query.status) q = q.where("status", "=", query.status);
  if (query.updatedSince) q = q.where("updated_at", ">=", query.updatedSince);
  const after = query.after;
  if (query.order === "updated") {
    if (after?.updatedAt) {
      const at = after.updatedAt;
      q = q.where((eb) => eb.or([eb("updated_at", ">", at), eb.and([eb("updated_at", "=", at), eb("sku", ">", after.sku)])]));
    }
    q = q.orderBy("updated_at").orderBy("sku");
  } else {
    if (after) q = q.where("sku", ">", after.sku);
    q = q.orderBy("sku");
  }
  const rows = await q.limit(query.limit).execute();
  return rows.map(rowToProduct);
}

/** insertChanges appends audit entries with one statement. */
export async function insertChanges(trx: CatalogTx, rows: ProductChangeRow[]): Promise<void> {
  // Deferred: it rides with the transaction's next statement (usually the COMMIT).
  await insertRows(trx, "product_changes", rows, { deferred: true });
}

/** listChanges reads one page of a SKU's audit trail, newest first. */
export async function listChanges(
  db: CatalogDb,
  merchantId: string,
  sku: string,
  beforeChangeId: string | undefined,
  limit: number,
): Promise<(ProductChangeRow & AuditSealColumns)[]> {
  return listMerchantChanges(db, merchantId, { sku, beforeChangeId, limit });
}

/**
 * listMerchantChanges reads one page of the merchant's audit trail across
 * products, newest first, optionally of one source kind (and reference) and
 * one SKU (idx_product_changes_source, idx_product_changes_sku).
 */
export async function listMerchantChanges(
  db: CatalogDb,
  merchantId: string,
  query: { sourceKind?: SourceKind; sourceRef?: string; sku?: string; beforeChangeId?: string; limit: number },
): Promise<(ProductChangeRow & AuditSealColumns)[]> {
  let q = db.selectFrom("product_changes").selectAll().where("merchant_id", "=", merchantId);
  if (query.sourceKind) q = q.where("source_kind", "=", query.sourceKind);
  if (query.sourceRef !== undefined) q = q.where("source_ref", "=", query.sourceRef);
  if (query.sku !== undefined) q = q.where("sku", "=", query.sku);
  if (query.beforeChangeId) q = q.where("change_id", "<", query.beforeChangeId);
  return q.orderBy("change_id", "desc").limit(query.limit).execute();
}
