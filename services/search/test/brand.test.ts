/**
 * The brand filter (issue 17): brands come with the catalog's events and
 * with a reindex, are kept in search_product_facets under the projection's
 * version guard, and SearchProducts filters on them ignoring case.
 * Events are published straight onto this file's stream (as projection.test.ts
 * does), in orders the catalog would not produce; search.test.ts checks the
 * catalog's own events end to end.
 */
import test from "ava";
import { sql } from "kysely";
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { ChangeType, ProductEventSchema, ProductStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import type { SearchProductsRequestSchema } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { eventSubject } from "@stockroom/events";
import { publishWithId } from "@stockroom/common/nats";
import { createDatabase } from "@stockroom/common/db";
import { waitFor, type TestMerchant } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { listProducts } from "@stockroom/catalog";
import type { SearchProjector } from "../src/projector.ts";
import { reindexMerchant } from "../src/reindex.ts";
import { searchProducts, upsertEntries, type SearchTables } from "../src/store.ts";
import { entryFromProduct } from "../src/convert.ts";
import { productInit, startSearchHarness, type SearchHarness } from "./harness.ts";

let h: SearchHarness;
let projector: SearchProjector;

test.before(async () => {
  h = await startSearchHarness("brand");
  projector = await h.startProjector();
});

test.after.always(async () => {
  await h?.close();
});

interface State {
  productId: string;
  version: number;
  title?: string;
  brand?: string;
  priceMinor?: number;
  deleted?: boolean;
}

/** publish puts one product event on the stream, as the catalog's relay would. */
async function publish(merchantId: string, sku: string, s: State): Promise<void> {
  const eventId = newUlid();
  const data = toBinary(
    ProductEventSchema,
    create(ProductEventSchema, {
      eventId,
      merchantId,
      type: s.deleted ? ChangeType.DELETED : ChangeType.UPDATED,
      product: {
        id: s.productId,
        sku,
        title: s.title ?? `Product ${sku}`,
        price: { currencyCode: "EUR", minorUnits: BigInt(s.priceMinor ?? 500) },
        stock: 1,
        status: ProductStatus.ACTIVE,
        version: BigInt(s.version),
        brand: s.brand ?? "",
      },
      occurTime: timestampNow(),
    }),
  );
  const subject = eventSubject(h.events, {
    aggregate_type: "product",
    merchant_id: merchantId,
    event_type: s.deleted ? "product.deleted" : "product.updated",
  });
  await publishWithId(h.nats.js, subject, data, eventId);
}

async function drained(): Promise<void> {
  await waitFor("the projector to apply every event", async () => ((await projector.lag()).pendingEvents === 0 ? true : undefined));
}

type Query = MessageInitShape<typeof SearchProductsRequestSchema>;

/** skus runs one search page by page (pageSize per page) and returns the SKUs found. */
async function skus(merchant: TestMerchant, query: Query): Promise<string[]> {
  const out: string[] = [];
  let pageToken = "";
  do {
    const res = await h.search(merchant).searchProducts({ ...query, pageToken });
    out.push(...res.results.map((r) => r.sku));
    pageToken = res.nextPageToken;
  } while (pageToken !== "");
  return out;
}

async function facets(merchantId: string, sku: string) {
  return h.searchDb
    .selectFrom("search_product_facets")
    .select(["product_id", "version", "brand"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .executeTakeFirst();
}

const eur = (minor: number) => ({ currencyCode: "EUR", minorUnits: BigInt(minor) });

test("the brand filter ignores case and surrounding blanks, and combines with the words, the price and paging", async (t) => {
  const merchant = await h.newMerchant();
  const other = await h.newMerchant();
  const products: [string, State][] = [
    ["A-MUG", { productId: newUlid(), version: 1, title: "Stoneware mug", brand: "Acme", priceMinor: 1200 }],
    ["B-MUG", { productId: newUlid(), version: 1, title: "Enamel mug", brand: "ACME", priceMinor: 2500 }],
    ["C-MUG", { productId: newUlid(), version: 1, title: "Glass mug", brand: "Globex", priceMinor: 1300 }],
    ["D-BOWL", { productId: newUlid(), version: 1, title: "Bowl", brand: "acme", priceMinor: 900 }],
    ["E-MUG", { productId: newUlid(), version: 1, title: "Plain mug", priceMinor: 1100 }],
    ["F-CUP", { productId: newUlid(), version: 1, title: "Café cup", brand: "Café Olé", priceMinor: 700 }],
    ["G-CUP", { productId: newUlid(), version: 1, title: "Cafe cup", brand: "Cafe Ole", priceMinor: 700 }],
    ...Array.from({ length: 25 }, (_, i): [string, State] => [
      `P-${String(i).padStart(2, "0")}`,
      { productId: newUlid(), version: 1, title: `Teapot ${i}`, brand: i % 2 === 0 ? "Initech" : "initech" },
    ]),
  ];
  for (const [sku, state] of products) await publish(merchant.merchantId, sku, state);
  await publish(other.merchantId, "A-MUG", { productId: newUlid(), version: 1, title: "Other's mug", brand: "Acme" });
  await drained();

  t.deepEqual(await skus(merchant, { brand: "acme" }), ["A-MUG", "B-MUG", "D-BOWL"], "any case");
  t.deepEqual(await skus(merchant, { brand: "  aCmE \t" }), ["A-MUG", "B-MUG", "D-BOWL"], "surrounding blanks are trimmed");
  t.deepEqual(await skus(merchant, { brand: "Acm" }), [], "the whole brand, not a prefix");
  t.deepEqual(await skus(merchant, { brand: "café olé" }), ["F-CUP"], "case only: accents still count");
  t.deepEqual(await skus(merchant, { brand: "CAFE OLE" }), ["G-CUP"]);
  t.deepEqual(await skus(merchant, { query: "mug", brand: "acme" }), ["A-MUG", "B-MUG"], "with the words");
  t.deepEqual(await skus(merchant, { query: "mug", brand: "Acme", maxPrice: eur(2000) }), ["A-MUG"], "with words and price");
  t.deepEqual(await skus(merchant, { brand: "acme", minPrice: eur(1000) }), ["A-MUG", "B-MUG"], "with the price");
  t.deepEqual(await skus(merchant, { brand: "   " }), products.map(([sku]) => sku).sort(), "blanks only: no brand filter");
  t.deepEqual(await skus(other, { brand: "acme" }), ["A-MUG"], "another merchant's brands stay its own");

  // Paging: 25 Initech teapots in pages of 10, the token bound to the brand.
  const teapots = products.filter(([sku]) => sku.startsWith("P-")).map(([sku]) => sku);
  t.deepEqual(await skus(merchant, { brand: "INITECH", pageSize: 10 }), teapots);
  const search = h.search(merchant);
  const first = await search.searchProducts({ brand: "initech", query: "teapot", pageSize: 10 });
  t.deepEqual(
    first.results.map((r) => r.sku),
    teapots.slice(0, 10),
  );
  const second = await search.searchProducts({ brand: "initech", query: "teapot", pageSize: 10, pageToken: first.nextPageToken });
  t.deepEqual(
    second.results.map((r) => r.sku),
    teapots.slice(10, 20),
  );
  for (const brand of ["acme", ""]) {
    const error = await t.throwsAsync(search.searchProducts({ brand, query: "teapot", pageSize: 10, pageToken: first.nextPageToken }));
    t.is(ConnectError.from(error).code, Code.InvalidArgument, `a token of brand "initech" used with brand "${brand}"`);
  }
  const plain = await search.searchProducts({ query: "teapot", pageSize: 10 });
  await t.throwsAsync(search.searchProducts({ brand: "initech", query: "teapot", pageSize: 10, pageToken: plain.nextPageToken }), {
    message: /page_token/,
  });
});

test("a brand longer than 200 characters is INVALID_ARGUMENT on field brand; 200 is fine", async (t) => {
  const merchant = await h.newMerchant();
  const search = h.search(merchant);
  const error = ConnectError.from(await t.throwsAsync(search.searchProducts({ brand: "é".repeat(201) })));
  t.is(error.code, Code.InvalidArgument);
  t.regex(error.rawMessage, /brand: must be at most 200 characters/);
  await t.notThrowsAsync(search.searchProducts({ brand: ` ${"é".repeat(200)} ` }), "200 characters, blanks around them trimmed");
});

test("the projection carries the brand of the newest event: changed, cleared, never moved back by a late event", async (t) => {
  const merchant = await h.newMerchant();
  const p = newUlid();
  await publish(merchant.merchantId, "X", { productId: p, version: 2, brand: "Globex" });
  await publish(merchant.merchantId, "X", { productId: p, version: 1, brand: "Acme" });
  await drained();
  t.deepEqual(await facets(merchant.merchantId, "X"), { product_id: p, version: 2, brand: "Globex" }, "the late version 1 lost");
  t.deepEqual(await skus(merchant, { brand: "globex" }), ["X"]);
  t.deepEqual(await skus(merchant, { brand: "acme" }), []);

  await publish(merchant.merchantId, "X", { productId: p, version: 3 });
  await drained();
  t.deepEqual(
    await facets(merchant.merchantId, "X"),
    { product_id: p, version: 2, brand: "Globex" },
    "no brand writes no facets row: version 2's stays, not at the product's state",
  );
  t.deepEqual(await skus(merchant, { brand: "globex" }), []);
  t.deepEqual(await skus(merchant, { query: "product" }), ["X"], "still found by its words");

  // A product that never had a brand has no facets row at all.
  await publish(merchant.merchantId, "Y", { productId: newUlid(), version: 1 });
  await drained();
  t.is(await facets(merchant.merchantId, "Y"), undefined);
  t.deepEqual(await skus(merchant, { query: "product" }), ["X", "Y"]);

  await publish(merchant.merchantId, "X", { productId: p, version: 4, brand: "Hooli" });
  await publish(merchant.merchantId, "X", { productId: p, version: 5, brand: "Hooli", deleted: true });
  await drained();
  t.deepEqual(await skus(merchant, { brand: "hooli" }), [], "a deleted product is not found by its brand");
});

test.serial("a reindex carries the catalog's brands, also to rows projected before there were facets", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  // No relay runs in this file: only the reindex brings these to search.
  await catalog.createProduct({ product: productInit("R-1", { brand: "Acme" }) });
  await catalog.createProduct({ product: productInit("R-2", { brand: "ACME" }) });
  await catalog.createProduct({ product: productInit("R-3") });
  const first = await collect(reindexMerchant({ catalogDb: h.db, searchDb: h.searchDb, pageSize: 2 }, merchant.merchantId));
  t.like(first, { read: 3, updated: 3, removed: 0, done: true });
  t.deepEqual(await skus(merchant, { brand: "ACME" }), ["R-1", "R-2"]);
  t.is(await facets(merchant.merchantId, "R-3"), undefined, "a product without a brand has no facets row");

  // A row projected before search_product_facets existed has no facets row (or an older one): not found by brand until a reindex.
  await h.searchDb.deleteFrom("search_product_facets").where("merchant_id", "=", merchant.merchantId).where("sku", "=", "R-1").execute();
  await h.searchDb
    .updateTable("search_product_facets")
    .set({ version: 0 })
    .where("merchant_id", "=", merchant.merchantId)
    .where("sku", "=", "R-2")
    .execute();
  t.deepEqual(await skus(merchant, { brand: "acme" }), [], "facets not at the row's state are not trusted");
  const second = await collect(reindexMerchant({ catalogDb: h.db, searchDb: h.searchDb }, merchant.merchantId));
  t.like(second, { read: 3, updated: 2, removed: 0, done: true });
  t.deepEqual(await skus(merchant, { brand: "acme" }), ["R-1", "R-2"]);
  t.like(
    await collect(reindexMerchant({ catalogDb: h.db, searchDb: h.searchDb }, merchant.merchantId)),
    { updated: 0 },
    "nothing left (R-3, without a brand or a facets row, is not behind)",
  );

  // An older release's process changed R-1 (keeping its brand in the catalog) and its event, which knew no brands, was applied.
  await catalog.updateProduct({ product: { sku: "R-1", title: "Renamed by the old release" }, updateMask: { paths: ["title"] } });
  const [r1] = await listProducts(h.db, merchant.merchantId, { order: "sku", limit: 1 });
  t.like(r1, { sku: "R-1", version: 2, brand: "Acme" });
  await upsertEntries(h.searchDb, [entryFromProduct(merchant.merchantId, { ...r1!, brand: "" })]);
  t.deepEqual(await facets(merchant.merchantId, "R-1"), { product_id: r1!.id, version: 1, brand: "Acme" }, "no facets row at version 2");
  t.deepEqual(await skus(merchant, { brand: "acme" }), ["R-2"]);
  const repair = await collect(reindexMerchant({ catalogDb: h.db, searchDb: h.searchDb }, merchant.merchantId));
  t.like(repair, { updated: 1 }, "the brand held at the catalog's version, but not the catalog's, is rewritten");
  t.deepEqual(await skus(merchant, { brand: "acme" }), ["R-1", "R-2"]);
});

test.serial("a brand search reads the (merchant_id, brand, sku) index, in SKU order without a sort", async (t) => {
  // Enough rows of several merchants and brands that the plan is the one production gets.
  const merchantId = newUlid();
  await sql`INSERT INTO search_documents (merchant_id, sku, product_id, version, deleted, title, words, grams, terms_format,
      price_minor, currency, stock, status, changed_at)
    SELECT IF(seq % 4 = 0, ${merchantId}, CONCAT('OTHER', seq % 7)), CONCAT('SKU-', LPAD(seq, 6, '0')), 'P', 1, 0, CONCAT('Mug ', seq),
      '', '', 1, seq, 'EUR', seq % 5, 'active', NOW(3) FROM seq_1_to_20000`.execute(h.searchDb);
  await sql`INSERT INTO search_product_facets (merchant_id, sku, product_id, version, brand)
    SELECT merchant_id, sku, product_id, version, CONCAT('Brand ', CRC32(sku) % 40) FROM search_documents
    WHERE sku LIKE 'SKU-%'`.execute(h.searchDb);
  await sql`ANALYZE TABLE search_documents, search_product_facets`.execute(h.searchDb);
  const statements: { sql: string; parameters: readonly unknown[] }[] = [];
  const url = new URL(h.api.databaseUrl);
  url.pathname = `/${(await sql<{ db: string }>`SELECT DATABASE() AS db`.execute(h.searchDb)).rows[0]!.db}`;
  const observed = createDatabase<SearchTables>({
    url: url.toString(),
    poolSize: 1,
    observe: (s, parameters) => statements.push({ sql: s, parameters }),
  });
  t.teardown(() => observed.destroy());
  for (const query of [
    { brand: "brand 7", inStockOnly: false, limit: 21 },
    { brand: "BRAND 7", inStockOnly: true, limit: 21, afterSku: "SKU-001000", price: { currency: "EUR", minMinor: 100 } },
  ]) {
    const hits = await searchProducts(observed, merchantId, query);
    t.true(hits.length > 0);
    const { sql: text, parameters } = statements.at(-1)!;
    const plan = await observed.executeQuery<{ table: string; key: string | null; Extra: string }>({
      sql: `EXPLAIN ${text}`,
      parameters,
      query: { kind: "RawNode" } as never,
      queryId: { queryId: "explain" },
    });
    const facetsStep = plan.rows.find((r) => r.table === "f");
    t.is(facetsStep?.key, "idx_search_product_facets_brand", JSON.stringify(plan.rows));
    t.is(plan.rows[0]?.table, "f", "the facets index drives the join");
    t.false(
      plan.rows.some((r) => /filesort/.test(r.Extra)),
      "no sort: the index is in SKU order",
    );
  }
});

async function collect<T>(progress: AsyncGenerator<T>): Promise<T> {
  let last: T | undefined;
  for await (const p of progress) last = p;
  return last!;
}
