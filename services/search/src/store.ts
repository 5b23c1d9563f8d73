import path from "node:path";
import { sql, type Generated, type Kysely, type Selectable } from "kysely";
import { createDatabase, ensureDatabase, insertRows, migrateToLatest, type MigrationSet } from "@stockroom/common/db";
import type { ProductStatus } from "@stockroom/catalog";
import type { Position } from "./domain.ts";

/** searchMigrations is the folder of the search database's tables (a database of its own, not the catalog's). */
export const searchMigrations: MigrationSet = {
  name: "search",
  folder: path.join(import.meta.dirname, "..", "migrations"),
};

export interface SearchProductRow {
  merchant_id: string;
  sku: string;
  product_id: string;
  version: number;
  /** 1 for a tombstone: the product was deleted at this version. */
  deleted: number;
  title: string;
  description: string;
  /** The attribute values, space-separated, for full-text search. */
  attributes_text: string;
  price_minor: number;
  currency: string;
  stock: number;
  status: ProductStatus;
  /** When the catalog made the change this row reflects. */
  changed_at: Date;
  /** When this row last changed here (the search database's clock). */
  applied_at: Generated<Date>;
}

export interface SearchTables {
  search_products: SearchProductRow;
}

export type SearchDb = Kysely<SearchTables>;

/** SearchEntry is one product state to store. */
export type SearchEntry = Omit<SearchProductRow, "applied_at">;

/** openSearchDatabase opens the search database, creating and migrating it first when asked. */
export async function openSearchDatabase(options: { url: string; poolSize: number; migrate: boolean }): Promise<SearchDb> {
  if (options.migrate) await ensureDatabase(options.url);
  const db = createDatabase<SearchTables>({ url: options.url, poolSize: options.poolSize });
  if (options.migrate) await migrateToLatest(db, [searchMigrations]);
  return db;
}

// Data columns first; version and then product_id last (see NEWER).
const UPDATE_COLUMNS = [
  "deleted",
  "title",
  "description",
  "attributes_text",
  "price_minor",
  "currency",
  "stock",
  "status",
  "changed_at",
  "version",
  "product_id",
] as const;

/**
 * NEWER holds where the incoming state is newer than the stored one. MySQL
 * assigns left to right: once version is assigned, product_id's condition
 * reduces to "the new product id is greater", which is exactly when
 * product_id must change, so the order above keeps every column right.
 */
const NEWER = "(values(`product_id`), values(`version`)) > (`product_id`, `version`)";

/**
 * upsertEntries stores each entry unless the row already holds that state
 * or a newer one: replays, reordered deliveries and a reindex racing live
 * events can never move a row back.
 */
export async function upsertEntries(db: SearchDb, entries: readonly SearchEntry[]): Promise<void> {
  await insertRows(db, "search_products", entries, { onDuplicateKeyUpdate: UPDATE_COLUMNS, onlyIf: NEWER });
}

/** HeldState is what the projection holds for one SKU. */
export interface HeldState extends Position {
  deleted: boolean;
}

/** findHeld reads the states held for a merchant's SKUs in (after, through]; either bound may be open. */
export async function findHeld(
  db: SearchDb,
  merchantId: string,
  range: { after?: string; through?: string },
): Promise<Map<string, HeldState>> {
  let q = db.selectFrom("search_products").select(["sku", "product_id", "version", "deleted"]).where("merchant_id", "=", merchantId);
  if (range.after !== undefined) q = q.where("sku", ">", range.after);
  if (range.through !== undefined) q = q.where("sku", "<=", range.through);
  const rows = await q.execute();
  return new Map(rows.map((r) => [r.sku, { productId: r.product_id, version: Number(r.version), deleted: Boolean(r.deleted) }]));
}

/** findPosition reads the state held for one SKU. */
export async function findPosition(db: SearchDb, merchantId: string, sku: string): Promise<Position | undefined> {
  const row = await db
    .selectFrom("search_products")
    .select(["product_id", "version"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .executeTakeFirst();
  return row && { productId: row.product_id, version: Number(row.version) };
}

/**
 * merchantClock reads the database clock that stamps applied_at, from the
 * merchant's rows so that it is the clock of the server holding them; it is
 * undefined when the merchant has no rows.
 */
export async function merchantClock(db: SearchDb, merchantId: string): Promise<Date | undefined> {
  const row = await db
    .selectFrom("search_products")
    .select(sql<Date>`NOW(6)`.as("now"))
    .where("merchant_id", "=", merchantId)
    .limit(1)
    .executeTakeFirst();
  return row?.now;
}

/** tombstone marks live rows deleted if nothing wrote them since `before`; it returns how many it marked. */
export async function tombstone(db: SearchDb, merchantId: string, skus: readonly string[], before: Date): Promise<number> {
  if (skus.length === 0) return 0;
  const result = await db
    .updateTable("search_products")
    .set({ deleted: 1 })
    .where("merchant_id", "=", merchantId)
    .where("sku", "in", skus)
    .where("deleted", "=", 0)
    .where("applied_at", "<", before)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export interface SearchQuery {
  /** A boolean-mode full-text query (domain.ts booleanQuery). */
  match?: string;
  price?: { currency: string; minMinor?: number; maxMinor?: number };
  inStockOnly: boolean;
  status?: ProductStatus;
  afterSku?: string;
  limit: number;
}

export type SearchHit = Pick<
  Selectable<SearchProductRow>,
  "product_id" | "sku" | "title" | "price_minor" | "currency" | "stock" | "status" | "version"
>;

/** searchProducts reads one page of a merchant's live products matching every filter, in SKU order. */
export async function searchProducts(db: SearchDb, merchantId: string, query: SearchQuery): Promise<SearchHit[]> {
  let q = db
    .selectFrom("search_products")
    .select(["product_id", "sku", "title", "price_minor", "currency", "stock", "status", "version"])
    .where("merchant_id", "=", merchantId)
    .where("deleted", "=", 0);
  if (query.match !== undefined)
    q = q.where(sql<boolean>`MATCH(title, description, attributes_text) AGAINST (${query.match} IN BOOLEAN MODE)`);
  if (query.price) {
    q = q.where("currency", "=", query.price.currency);
    if (query.price.minMinor !== undefined) q = q.where("price_minor", ">=", query.price.minMinor);
    if (query.price.maxMinor !== undefined) q = q.where("price_minor", "<=", query.price.maxMinor);
  }
  if (query.inStockOnly) q = q.where("stock", ">", 0);
  if (query.status) q = q.where("status", "=", query.status);
  if (query.afterSku !== undefined) q = q.where("sku", ">", query.afterSku);
  return q.orderBy("sku").limit(query.limit).execute();
}
