import path from "node:path";
import { sql, type Generated, type JoinBuilder, type Kysely, type Selectable } from "kysely";
import { createDatabase, ensureDatabase, inTransaction, insertRows, migrateToLatest, type MigrationSet } from "@stockroom/common/db";
import type { ProductStatus } from "@stockroom/catalog";
import { documentTerms, merchantTag, TERMS_FORMAT, type DocumentTerms, type Position, type SearchTerms } from "./domain.ts";

/** searchMigrations is the folder of the search database's tables (a database of its own, not the catalog's). */
export const searchMigrations: MigrationSet = {
  name: "search",
  folder: path.join(import.meta.dirname, "..", "migrations"),
};

/**
 * SearchDocumentRow is the projection's row of one SKU (search_documents):
 * what a hit shows and the filters read, and its text as the full-text
 * indexes take it (domain.ts documentTerms).
 */
export interface SearchDocumentRow {
  merchant_id: string;
  sku: string;
  product_id: string;
  version: number;
  /** 1 for a tombstone: the product was deleted at this version. */
  deleted: number;
  title: string;
  price_minor: number;
  currency: string;
  stock: number;
  status: ProductStatus;
  /** When the catalog made the change this row reflects. */
  changed_at: Date;
  /** When this row last changed here (the search database's clock). */
  applied_at: Generated<Date>;
  /** The words of the title, description and attribute values behind the merchant's tag; empty for a tombstone. */
  words: string;
  /** The grams of their runs behind the merchant's tag; empty when they have none. */
  grams: string;
  /** The version of the rules words and grams were made by (domain.ts TERMS_FORMAT). */
  terms_format: number;
}

/**
 * SearchFacetRow holds a product's filter columns that are not full-text, at
 * the same (product_id, version) as its search_documents row: a row whose
 * state differs (missing, or older) is not trusted by searchProducts. A
 * product with no brand has no facets row at its state: its row holds
 * nothing a filter can match, so it is not written, and a missing or older
 * row reads as no brand. A row projected before this table existed, or from an event of a
 * release that carried no brand, whose catalog row has a brand, is
 * rewritten by the reindex (reindex.ts).
 */
export interface SearchFacetRow {
  merchant_id: string;
  sku: string;
  product_id: string;
  version: number;
  /** The product's brand, compared ignoring case. NULL only in rows written before brandless products' rows were left out. */
  brand: string | null;
}

export interface SearchTables {
  search_documents: SearchDocumentRow;
  search_product_facets: SearchFacetRow;
}

export type SearchDb = Kysely<SearchTables>;

/**
 * SearchEntry is one product state to store: its search_documents row with
 * its text as the catalog has it (title, description, attribute values),
 * and its facets.
 */
export type SearchEntry = Omit<SearchDocumentRow, "applied_at" | "words" | "grams" | "terms_format"> &
  Pick<SearchFacetRow, "brand"> & { description: string; attributes_text: string };

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
  "words",
  "grams",
  "terms_format",
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

const FACET_UPDATE_COLUMNS = ["brand", "version", "product_id"] as const;

/** AT_LEAST is NEWER or the same state: for a reindex, whose catalog row is the truth about the state it read. */
const AT_LEAST = "(values(`product_id`), values(`version`)) >= (`product_id`, `version`)";

/**
 * upsertEntries stores each entry unless the row already holds that state
 * or a newer one: replays, reordered deliveries and a reindex racing live
 * events can never move a row back. A product's row (its text made into
 * the merchant's words and grams) and its facets row are written in one
 * transaction under the same guard, so they move together (the statements
 * ride with the COMMIT: one round trip), a transaction per merchant. fromCatalog (the reindex, which
 * read the entries from the catalog's rows) also rewrites rows and facets
 * held at the same state: an event of that state from a release before
 * facets carried no brand, and a row's terms may be of older rules
 * (TERMS_FORMAT). Only entries with a brand get a facets row
 * (SearchFacetRow).
 */
export async function upsertEntries(db: SearchDb, entries: readonly SearchEntry[], options: { fromCatalog?: boolean } = {}): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map(({ brand: _, ...entry }): Omit<SearchDocumentRow, "applied_at"> => withTerms(entry));
  // A brandless or deleted product's facets row would hold nothing a filter matches: none is written, and an
  // older one left behind is not at the product's state, which every read of the table requires.
  const facets = entries.flatMap(({ merchant_id, sku, product_id, version, deleted, brand }): SearchFacetRow[] =>
    brand === null || deleted ? [] : [{ merchant_id, sku, product_id, version, brand }],
  );
  const guard = options.fromCatalog ? AT_LEAST : NEWER;
  // A transaction per merchant (byMerchant); a batch is mostly one merchant's, so mostly one transaction.
  const facetsOf = byMerchant(facets);
  for (const [merchant, own] of byMerchant(rows)) {
    const ownFacets = facetsOf.get(merchant) ?? [];
    await inTransaction(db, async (trx) => {
      await insertRows(trx, "search_documents", own, { onDuplicateKeyUpdate: UPDATE_COLUMNS, onlyIf: guard, deferred: true });
      if (ownFacets.length > 0)
        await insertRows(trx, "search_product_facets", ownFacets, {
          onDuplicateKeyUpdate: FACET_UPDATE_COLUMNS,
          onlyIf: guard,
          deferred: true,
        });
    });
  }
}

/**
 * byMerchant groups rows by merchant, in the order merchants first appear:
 * a merchant's rows are on one shard, and a write across shards is refused
 * on Vitess (vtgate in SINGLE mode), so writes go a merchant at a time.
 */
export function byMerchant<Row extends { merchant_id: string }>(rows: readonly Row[]): Map<string, Row[]> {
  const groups = new Map<string, Row[]>();
  for (const row of rows) {
    const group = groups.get(row.merchant_id);
    if (group) group.push(row);
    else groups.set(row.merchant_id, [row]);
  }
  return groups;
}

/**
 * withTerms is a product's row as search_documents holds it: its text
 * (title, description, attribute values) made into the merchant's words and
 * grams by the current rules (TERMS_FORMAT), none for a tombstone. The
 * projector's and the migration's rows are made here.
 */
export function withTerms<Row extends { merchant_id: string; deleted: number } & EntryText>({
  description,
  attributes_text,
  ...row
}: Row): Omit<Row, "description" | "attributes_text"> & DocumentTerms & { terms_format: number } {
  const terms = row.deleted
    ? NO_TERMS
    : documentTerms(merchantTag(row.merchant_id), entryText({ title: row.title, description, attributes_text }));
  return { ...row, ...terms, terms_format: TERMS_FORMAT };
}

/** A tombstone's terms: it is found by no text. */
const NO_TERMS: DocumentTerms = { words: "", grams: "" };

type EntryText = Pick<SearchEntry, "title" | "description" | "attributes_text">;

/** entryText is an entry's searchable text: its title, description and attribute values. */
export function entryText(entry: EntryText): string {
  return `${entry.title} ${entry.description} ${entry.attributes_text}`;
}

/** sameState joins a facets row f at the state of its search_documents row s. */
function sameState<DB, TB extends keyof DB>(join: JoinBuilder<DB, TB>, side: "f"): JoinBuilder<DB, TB> {
  // biome-ignore lint/suspicious/noExplicitAny: the column names are built from the alias, which Kysely's types cannot follow
  return (join as JoinBuilder<any, any>)
    .onRef(`${side}.merchant_id`, "=", "s.merchant_id")
    .onRef(`${side}.sku`, "=", "s.sku")
    .onRef(`${side}.product_id`, "=", "s.product_id")
    .onRef(`${side}.version`, "=", "s.version");
}

/** HeldState is what the projection holds for one SKU. */
export interface HeldState extends Position {
  deleted: boolean;
  /** The SKU's brand: its facets row's at the same state; null when it has none there (no row, or an older one). */
  brand: string | null;
  /** The version of the rules its terms were made by (domain.ts TERMS_FORMAT). */
  termsFormat: number;
}

/**
 * merchantsWithOlderTerms lists the merchants with live rows whose terms
 * older rules made (terms_format below TERMS_FORMAT). It reads the whole
 * table (no index has terms_format): for start-up, not a request path.
 */
export async function merchantsWithOlderTerms(db: SearchDb): Promise<string[]> {
  const rows = await db
    .selectFrom("search_documents")
    .select("merchant_id")
    .distinct()
    .where("terms_format", "<", TERMS_FORMAT)
    .where("deleted", "=", 0)
    .orderBy("merchant_id")
    .execute();
  return rows.map((r) => r.merchant_id);
}

/** findHeld reads the states held for a merchant's SKUs in (after, through]; either bound may be open. */
export async function findHeld(
  db: SearchDb,
  merchantId: string,
  range: { after?: string; through?: string },
): Promise<Map<string, HeldState>> {
  let q = db
    .selectFrom("search_documents as s")
    .leftJoin("search_product_facets as f", (join) => sameState(join, "f"))
    .select(["s.sku", "s.product_id", "s.version", "s.deleted", "s.terms_format", "f.brand"])
    .where("s.merchant_id", "=", merchantId);
  if (range.after !== undefined) q = q.where("s.sku", ">", range.after);
  if (range.through !== undefined) q = q.where("s.sku", "<=", range.through);
  const rows = await q.execute();
  return new Map(
    rows.map((r) => [
      r.sku,
      {
        productId: r.product_id,
        version: Number(r.version),
        deleted: Boolean(r.deleted),
        brand: r.brand,
        termsFormat: Number(r.terms_format),
      },
    ]),
  );
}

/** findPosition reads the state held for one SKU. */
export async function findPosition(db: SearchDb, merchantId: string, sku: string): Promise<Position | undefined> {
  const row = await db
    .selectFrom("search_documents")
    .select(["product_id", "version"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .executeTakeFirst();
  return row && { productId: row.product_id, version: Number(row.version) };
}

/**
 * DbClock is a reading of the search database's clock as the database
 * writes it ("YYYY-MM-DD hh:mm:ss.ffffff"): applied_at keeps microseconds,
 * and a JavaScript Date would drop them, so a row written in the same
 * millisecond before the reading would compare as written after it.
 */
export type DbClock = string & { readonly __dbClock: unique symbol };

/** isDbClock tells whether text is written as a DbClock (a reindex's resume token carries one). */
export function isDbClock(text: unknown): text is DbClock {
  return typeof text === "string" && /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$/.test(text);
}

/** The clock before any row: what a merchant without rows starts a rebuild at. */
export const CLOCK_ZERO = "1970-01-01 00:00:00.000000" as DbClock;

/**
 * merchantClock reads the database clock that stamps applied_at, from the
 * merchant's rows so that it is the clock of the server holding them; it is
 * undefined when the merchant has no rows.
 */
export async function merchantClock(db: SearchDb, merchantId: string): Promise<DbClock | undefined> {
  const row = await db
    .selectFrom("search_documents")
    .select(sql<string>`CAST(NOW(6) AS CHAR)`.as("now"))
    .where("merchant_id", "=", merchantId)
    .limit(1)
    .executeTakeFirst();
  return row?.now as DbClock | undefined;
}

/** tombstone marks live rows deleted if nothing wrote them since `before`; it returns how many it marked. */
export async function tombstone(db: SearchDb, merchantId: string, skus: readonly string[], before: DbClock): Promise<number> {
  if (skus.length === 0) return 0;
  const result = await db
    .updateTable("search_documents")
    .set({ deleted: 1, ...NO_TERMS })
    .where("merchant_id", "=", merchantId)
    .where("sku", "in", skus)
    .where("deleted", "=", 0)
    .where(sql<boolean>`applied_at < CAST(${before} AS DATETIME(6))`)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export interface SearchQuery {
  /** The boolean-mode full-text queries of the words and the runs' grams (domain.ts searchTerms). */
  match?: SearchTerms;
  /** SKU prefixes: a product whose SKU starts with one (byte for byte, as SKUs are compared) matches too (domain.ts skuPrefixes). */
  skuPrefixes?: readonly string[];
  price?: { currency: string; minMinor?: number; maxMinor?: number };
  inStockOnly: boolean;
  status?: ProductStatus;
  /** Only this brand, ignoring case (already trimmed). */
  brand?: string;
  afterSku?: string;
  limit: number;
  /** How text is looked for (TextPlan); "auto" unless a test or a bench compares them. */
  plan?: TextPlan;
}

/**
 * TextPlan is how a page of text matches is read. "index": by the
 * full-text indexes, which give every match at once, unordered, so a page
 * in SKU order reads and sorts all of them: a word in 35,000 of a
 * merchant's 200,000 products took 150–450 ms for each page of 20. "scan":
 * the merchant's rows (with a brand, the brand's) in SKU order, each tested with LIKE for the same
 * words and grams, stopping at a full page: a common word fills it within
 * a few hundred rows, a rare one reads every row. "auto" scans the first
 * SCAN_FIRST rows; if they fill the page, or are all the merchant has, that
 * is the answer; otherwise it scans on as far as the rate of matches seen
 * says the page will fill, if that is within SCAN_MOST rows in all; the
 * rest of the page is read from the indexes, after the rows scanned.
 */
export type TextPlan = "auto" | "index" | "scan";

const SCAN_FIRST = 256;
const SCAN_MOST = 2048;

export type SearchHit = Pick<
  Selectable<SearchDocumentRow>,
  "product_id" | "sku" | "title" | "price_minor" | "currency" | "stock" | "status" | "version"
>;

/**
 * searchProducts reads one page of a merchant's live products matching every
 * filter, in SKU order: those whose text matches, and those whose SKU starts
 * with one of skuPrefixes. Each is its own indexed read (the text by
 * TextPlan, a range of the primary key), merged here: an OR of both in one
 * statement would scan every row of the merchant. With a brand, a page is
 * read from the facets' (merchant_id, brand, sku) index, joined to the rows
 * at the same state: the index compares ignoring case and accents
 * (utf8mb4_unicode_ci: "Cafe" = "Café"), so the lower-cased brands are also
 * compared byte for byte, which leaves "ignoring case" only.
 */
export async function searchProducts(db: SearchDb, merchantId: string, query: SearchQuery): Promise<SearchHit[]> {
  const { match, skuPrefixes = [] } = query;
  const pages: Promise<SearchHit[]>[] = [];
  if (match !== undefined) pages.push(readText(db, merchantId, query, match));
  else if (skuPrefixes.length === 0) pages.push(readPage(db, merchantId, query));
  for (const prefix of skuPrefixes) pages.push(readPage(db, merchantId, query, { prefix }));
  if (pages.length === 1) return pages[0]!;
  const hits = new Map<string, { key: Buffer; hit: SearchHit }>();
  for (const page of await Promise.all(pages)) for (const hit of page) hits.set(hit.sku, { key: Buffer.from(hit.sku), hit });
  // Byte order of UTF-8, as utf8mb4_bin orders the pages (JavaScript's order of UTF-16 units differs past U+FFFF).
  return [...hits.values()]
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .slice(0, query.limit)
    .map(({ hit }) => hit);
}

/** readText reads a page of text matches, by the query's TextPlan. */
async function readText(db: SearchDb, merchantId: string, query: SearchQuery, match: SearchTerms): Promise<SearchHit[]> {
  const plan = query.plan ?? "auto";
  if (plan === "index") return readPage(db, merchantId, query, { match });
  if (plan === "scan") return readPage(db, merchantId, query, { like: match });
  const hits: SearchHit[] = [];
  let after = query.afterSku;
  let scanned = 0;
  let window = SCAN_FIRST;
  for (;;) {
    // The window's last SKU; none when there are no more rows than the window (the scan then reads them all).
    const through = await nthSku(db, merchantId, query.brand, after, window);
    hits.push(
      ...(await readPage(db, merchantId, { ...query, afterSku: after, limit: query.limit - hits.length }, { like: match, through })),
    );
    if (hits.length >= query.limit || through === undefined) return hits;
    scanned += window;
    after = through;
    // As far as the page fills at the rate of matches seen, taken low (a count of matches less its standard
    // deviation, as of a Poisson count: a few hundred rows tell a rate roughly); past SCAN_MOST rows the indexes are
    // cheaper. The SKUs' order is the merchant's own, not random: a word can crowd the first rows and be rare after.
    const sure = hits.length - Math.sqrt(hits.length);
    if (sure <= 0) break;
    window = Math.ceil(((query.limit - hits.length) * scanned) / sure);
    if (scanned + window > SCAN_MOST) break;
  }
  return [...hits, ...(await readPage(db, merchantId, { ...query, afterSku: after, limit: query.limit - hits.length }, { match }))];
}

/** nthSku is the SKU n rows after `after` in the SKU order of the merchant's rows, or of its brand's, or undefined when there are fewer. */
async function nthSku(
  db: SearchDb,
  merchantId: string,
  brand: string | undefined,
  after: string | undefined,
  n: number,
): Promise<string | undefined> {
  const rows =
    brand === undefined
      ? sql`SELECT r.sku FROM search_documents r WHERE r.merchant_id = ${merchantId}`
      : sql`SELECT r.sku FROM search_product_facets r WHERE ${ofBrand(merchantId, brand, "r")}`;
  const { rows: nth } = await sql<{ sku: string }>`${rows}${after === undefined ? sql`` : sql` AND r.sku > ${after}`}
    ORDER BY r.sku LIMIT 1 OFFSET ${n - 1}`.execute(db);
  return nth[0]?.sku;
}

/** filtered is the statement of a page's rows: the merchant's live products matching the filters other than text and brand. */
function filtered(db: SearchDb, merchantId: string, query: SearchQuery) {
  let q = db
    .selectFrom("search_documents as s")
    .select(["s.product_id", "s.sku", "s.title", "s.price_minor", "s.currency", "s.stock", "s.status", "s.version"])
    .where("s.merchant_id", "=", merchantId)
    .where("s.deleted", "=", 0);
  if (query.price) {
    q = q.where("s.currency", "=", query.price.currency);
    if (query.price.minMinor !== undefined) q = q.where("s.price_minor", ">=", query.price.minMinor);
    if (query.price.maxMinor !== undefined) q = q.where("s.price_minor", "<=", query.price.maxMinor);
  }
  if (query.inStockOnly) q = q.where("s.stock", ">", 0);
  if (query.status) q = q.where("s.status", "=", query.status);
  return q;
}

/**
 * readPage reads a page in SKU order of the merchant's live products that
 * match the filters and, if given, whose text matches (match: by the
 * full-text indexes; like: each row tested with LIKE as those indexes would
 * answer, likeText) or whose SKU starts with prefix; after query.afterSku,
 * and up to through if given. Without a brand it reads a range of the
 * primary key; with one, of the facets' (merchant_id, brand, sku) index,
 * joined to the rows at the same state (ofBrand).
 */
function readPage(
  db: SearchDb,
  merchantId: string,
  query: SearchQuery,
  { match, like, prefix, through }: { match?: SearchTerms; like?: SearchTerms; prefix?: string; through?: string } = {},
): Promise<SearchHit[]> {
  let q = filtered(db, merchantId, query);
  if (match?.words !== undefined) q = q.where(sql<boolean>`MATCH(s.words) AGAINST (${match.words} IN BOOLEAN MODE)`);
  if (match?.grams !== undefined) q = q.where(sql<boolean>`MATCH(s.grams) AGAINST (${match.grams} IN BOOLEAN MODE)`);
  if (like !== undefined) q = q.where(likeText(like));
  if (prefix !== undefined) q = q.where("s.sku", "like", `${escapeLike(prefix)}%`);
  if (query.brand === undefined) {
    if (query.afterSku !== undefined) q = q.where("s.sku", ">", query.afterSku);
    if (through !== undefined) q = q.where("s.sku", "<=", through);
    return q.orderBy("s.sku").limit(query.limit).execute();
  }
  let b = q.innerJoin("search_product_facets as f", (join) => sameState(join, "f")).where(ofBrand(merchantId, query.brand));
  // Keyset and order on the facets' sku (equal to s.sku), so the index gives the order.
  if (query.afterSku !== undefined) b = b.where("f.sku", ">", query.afterSku);
  if (through !== undefined) b = b.where("f.sku", "<=", through);
  return b.orderBy("f.sku").limit(query.limit).execute();
}

/**
 * likeText is the boolean-mode queries of match as a row's test: each word
 * (any of its spellings) starts one of the row's words, each gram is one of
 * its grams. The terms hold no spaces, and the stored ones are separated by
 * one: a word starts the column or follows a space. `words` compares as the
 * index does (utf8mb4_unicode_ci: case and accents aside; domain.ts folds
 * what LIKE would compare otherwise), `grams` byte for byte.
 */
function likeText(match: SearchTerms) {
  return sql<boolean>`(${sql.join(
    [
      ...booleanTerms(match.words).map((spellings) =>
        orOf(spellings.map((w) => sql`(s.words LIKE ${`${escapeLike(w)}%`} OR s.words LIKE ${`% ${escapeLike(w)}%`})`)),
      ),
      ...booleanTerms(match.grams).map(([gram]) => {
        const g = escapeLike(gram!);
        return sql`(s.grams = ${gram} OR s.grams LIKE ${`${g} %`} OR s.grams LIKE ${`% ${g} %`} OR s.grams LIKE ${`% ${g}`})`;
      }),
    ],
    sql` AND `,
  )})`;
}

/** booleanTerms reads a boolean-mode query of searchTerms back: each required term, as its alternatives, without operators. */
function booleanTerms(query: string | undefined): string[][] {
  if (query === undefined) return [];
  return [...query.matchAll(/\+(?:\(([^)]*)\)|(\S+))/g)].map(([, group, one]) =>
    (group ?? one!).split(" ").map((term) => term.replace(/\*$/, "")),
  );
}

function orOf(parts: ReturnType<typeof sql>[]) {
  return parts.length === 1 ? parts[0]! : sql`(${sql.join(parts, sql` OR `)})`;
}

/** escapeLike makes text match itself in a LIKE pattern (the default escape, backslash). */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, "\\$&");
}

/**
 * ofBrand keeps a statement's facets rows (alias f) to a merchant's brand, ignoring
 * case: the index compares ignoring case and accents (utf8mb4_unicode_ci), so
 * the lower-cased brands are also compared byte for byte. CONVERT: the
 * parameter arrives in the connection's character set, which behind vtgate
 * may be utf8mb3 (where utf8mb4_bin is no valid collation).
 */
function ofBrand(merchantId: string, brand: string, alias = "f") {
  const column = (name: string) => sql.ref(`${alias}.${name}`);
  return sql<boolean>`(${column("merchant_id")} = ${merchantId} AND ${column("brand")} = ${brand}
    AND LOWER(${column("brand")}) COLLATE utf8mb4_bin = CONVERT(LOWER(${brand}) USING utf8mb4) COLLATE utf8mb4_bin)`;
}
