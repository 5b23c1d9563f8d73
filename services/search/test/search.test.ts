/**
 * SearchProducts over the projection, fed end to end: catalog RPCs → outbox
 * → relay → JetStream → projector → search database.
 */
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { ProductStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { SearchProductsRequestSchema, SearchResult } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { waitFor, type TestMerchant } from "@stockroom/common/testing";
import { productInit, startSearchHarness, type SearchHarness } from "./harness.ts";

let h: SearchHarness;

test.before(async () => {
  h = await startSearchHarness("search");
  await h.startRelay();
  await h.startProjector();
});

test.after.always(async () => {
  await h?.close();
});

type Query = MessageInitShape<typeof SearchProductsRequestSchema>;

/** skus runs one search (every page) and returns the SKUs found. */
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

/** settled waits until a search returns exactly the expected SKUs. */
async function settled(merchant: TestMerchant, query: Query, expected: string[]): Promise<void> {
  let last: string[] = [];
  try {
    await waitFor(
      `search ${JSON.stringify(query, (_k, v) => (typeof v === "bigint" ? String(v) : v))}`,
      async () => {
        last = await skus(merchant, query);
        return JSON.stringify(last) === JSON.stringify(expected) ? true : undefined;
      },
      15_000,
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}: last saw ${JSON.stringify(last)}, want ${JSON.stringify(expected)}`);
  }
}

async function one(merchant: TestMerchant, sku: string): Promise<SearchResult | undefined> {
  const res = await h.search(merchant).searchProducts({ query: "", pageSize: 100 });
  return res.results.find((r) => r.sku === sku);
}

test("creates, updates and deletes through the catalog show up in search", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("LAMP-1", { title: "Brass desk lamp" }) });
  await settled(merchant, { query: "brass" }, ["LAMP-1"]);

  const { product } = await catalog.updateProduct({
    product: { sku: "LAMP-1", title: "Copper desk lamp", stock: 3 },
    updateMask: { paths: ["title", "stock"] },
  });
  await settled(merchant, { query: "copper" }, ["LAMP-1"]);
  await settled(merchant, { query: "brass" }, []);
  t.like(await one(merchant, "LAMP-1"), {
    id: product!.id,
    title: "Copper desk lamp",
    stock: 3,
    version: 2n,
    status: ProductStatus.ACTIVE,
  });
  t.is((await one(merchant, "LAMP-1"))?.price?.minorUnits, 1999n);

  await catalog.deleteProduct({ sku: "LAMP-1" });
  await settled(merchant, { query: "" }, []);

  // The SKU recreated: a new product with version 1 replaces the tombstone of version 3.
  const { product: again } = await catalog.createProduct({ product: productInit("LAMP-1", { title: "Reborn lamp" }) });
  await settled(merchant, { query: "reborn" }, ["LAMP-1"]);
  t.like(await one(merchant, "LAMP-1"), { id: again!.id, version: 1n });
});

test("text, price, stock and status filters, alone and together", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  const eur = (minor: number) => ({ currencyCode: "EUR", minorUnits: BigInt(minor) });
  await Promise.all([
    catalog.createProduct({
      product: productInit("A-MUG", { title: "Stoneware mug", description: "Holds tea", price: eur(1200), stock: 5 }),
    }),
    catalog.createProduct({ product: productInit("B-MUG", { title: "Enamel mugs, set of two", price: eur(2500), stock: 0 }) }),
    catalog.createProduct({
      product: productInit("C-PLATE", {
        title: "Plate",
        description: "Goes with the stoneware mug",
        price: eur(900),
        stock: 2,
        status: ProductStatus.DRAFT,
      }),
    }),
    catalog.createProduct({
      product: productInit("D-BOWL", {
        title: "Bowl",
        attributes: { glaze: "Celadon" },
        price: { currencyCode: "USD", minorUnits: 1500n },
        stock: 1,
      }),
    }),
  ]);
  await settled(merchant, { query: "" }, ["A-MUG", "B-MUG", "C-PLATE", "D-BOWL"]);

  t.deepEqual(await skus(merchant, { query: "mug" }), ["A-MUG", "B-MUG", "C-PLATE"], "prefix and description matches");
  t.deepEqual(await skus(merchant, { query: "STONEWARE Mug" }), ["A-MUG", "C-PLATE"], "every word, any case");
  t.deepEqual(await skus(merchant, { query: "celadon" }), ["D-BOWL"], "attribute values");
  t.deepEqual(await skus(merchant, { query: "the stoneware" }), ["A-MUG", "C-PLATE"], "stopwords are ignored, not required");
  t.deepEqual(await skus(merchant, { query: "mug", minPrice: eur(1000), maxPrice: eur(2000) }), ["A-MUG"]);
  t.deepEqual(await skus(merchant, { minPrice: eur(1000) }), ["A-MUG", "B-MUG"], "other currencies never match a price filter");
  t.deepEqual(await skus(merchant, { maxPrice: { currencyCode: "USD", minorUnits: 1500n } }), ["D-BOWL"]);
  t.deepEqual(await skus(merchant, { inStockOnly: true }), ["A-MUG", "C-PLATE", "D-BOWL"]);
  t.deepEqual(await skus(merchant, { status: ProductStatus.DRAFT }), ["C-PLATE"]);
  t.deepEqual(await skus(merchant, { query: "mug", inStockOnly: true, status: ProductStatus.ACTIVE }), ["A-MUG"]);
});

test("pages are keyset pages in SKU order, and a token only works with its own filters", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  const all = Array.from({ length: 23 }, (_, i) => `P-${String(i).padStart(2, "0")}`);
  await Promise.all(all.map((sku) => catalog.createProduct({ product: productInit(sku, { title: `Teapot ${sku}` }) })));
  await settled(merchant, { query: "teapot", pageSize: 100 }, all);

  const search = h.search(merchant);
  const first = await search.searchProducts({ query: "teapot", pageSize: 10 });
  t.deepEqual(
    first.results.map((r) => r.sku),
    all.slice(0, 10),
  );
  // A product added before the current position does not shift later pages.
  await catalog.createProduct({ product: productInit("P-00a", { title: "Teapot late" }) });
  await settled(merchant, { query: "late" }, ["P-00a"]);
  const second = await search.searchProducts({ query: "teapot", pageSize: 10, pageToken: first.nextPageToken });
  t.deepEqual(
    second.results.map((r) => r.sku),
    all.slice(10, 20),
  );
  const third = await search.searchProducts({ query: "teapot", pageSize: 10, pageToken: second.nextPageToken });
  t.deepEqual(
    third.results.map((r) => r.sku),
    all.slice(20),
  );
  t.is(third.nextPageToken, "");

  const error = await t.throwsAsync(search.searchProducts({ query: "teapot", inStockOnly: true, pageToken: first.nextPageToken }));
  t.is(ConnectError.from(error).code, Code.InvalidArgument);
});

test("a brand set, changed and cleared through the catalog is what the brand filter finds", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("K-1", { title: "Kettle", brand: "Acme" }) });
  await catalog.createProduct({ product: productInit("K-2", { title: "Kettle", brand: "Globex" }) });
  await catalog.createProduct({ product: productInit("K-3", { title: "Toaster", brand: "acme" }) });
  await settled(merchant, { brand: "ACME" }, ["K-1", "K-3"]);
  t.deepEqual(await skus(merchant, { query: "kettle", brand: "acme" }), ["K-1"]);

  await catalog.updateProduct({ product: { sku: "K-2", brand: "Acme" }, updateMask: { paths: ["brand"] } });
  await settled(merchant, { brand: "acme" }, ["K-1", "K-2", "K-3"]);
  await catalog.updateProduct({ product: { sku: "K-1", brand: "" }, updateMask: { paths: ["brand"] } });
  await settled(merchant, { brand: "acme" }, ["K-2", "K-3"]);
  await catalog.deleteProduct({ sku: "K-3" });
  await settled(merchant, { brand: "acme" }, ["K-2"]);
  t.deepEqual(await skus(merchant, { brand: "globex" }), []);
});

test("bad requests are refused with the field at fault", async (t) => {
  const merchant = await h.newMerchant();
  const search = h.search(merchant);
  const cases: [Query, string][] = [
    [{ query: "a an of" }, "query"],
    [{ minPrice: { currencyCode: "EUR", minorUnits: 1n }, maxPrice: { currencyCode: "USD", minorUnits: 2n } }, "max_price.currency_code"],
    [{ minPrice: { currencyCode: "EUR", minorUnits: 5n }, maxPrice: { currencyCode: "EUR", minorUnits: 2n } }, "max_price.minor_units"],
    [{ minPrice: { currencyCode: "XXQ", minorUnits: 5n } }, "min_price.currency_code"],
    [{ status: 42 as ProductStatus }, "status"],
    [{ pageSize: -1 }, "page_size"],
    [{ brand: "b".repeat(201) }, "brand"],
  ];
  for (const [query, field] of cases) {
    const error = ConnectError.from(await t.throwsAsync(search.searchProducts(query)));
    t.is(error.code, Code.InvalidArgument, field);
    t.regex(error.message, new RegExp(field.replace(/\./g, "\\.")));
  }
});

test("a query of ignored words only says which words count", async (t) => {
  const error = ConnectError.from(await t.throwsAsync(h.search(await h.newMerchant()).searchProducts({ query: "a an of the" })));
  t.is(error.code, Code.InvalidArgument);
  t.is(
    error.rawMessage,
    'query: has nothing to search for: only one-letter words or common English words ("the", "with"), which are ignored; Chinese, Japanese, Korean, Thai, Lao, Khmer and Burmese letters count at any length',
  );
});

test("a query of one token also finds the SKUs it starts, as written, in capitals or in small letters, merged in SKU order page by page", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  for (const [sku, title] of [
    ["TSH-RED-XL", "Shirt"],
    ["TSH-RED-S", "Shirt"],
    ["TSH-BLUE-M", "Shirt"],
    ["TSH_RED", "Underscore"],
    ["mug-01", "Cup"],
    ["PLATE-1", "Plate for tsh-red fans"],
    ["ZZ-9", "tsh-red poster"],
  ] as const)
    await catalog.createProduct({ product: productInit(sku, { title, stock: sku === "TSH-RED-S" ? 0 : 3 }) });
  await settled(merchant, { query: "" }, ["PLATE-1", "TSH-BLUE-M", "TSH-RED-S", "TSH-RED-XL", "TSH_RED", "ZZ-9", "mug-01"]);
  // Before, "TSH-RED" was the words "tsh" and "red" of the text only, and "ZZ-9" was refused as having no word.
  t.deepEqual(await skus(merchant, { query: "TSH-RED" }), ["PLATE-1", "TSH-RED-S", "TSH-RED-XL", "ZZ-9"], "SKUs and text, in SKU order");
  t.deepEqual(await skus(merchant, { query: "tsh-red", pageSize: 1 }), ["PLATE-1", "TSH-RED-S", "TSH-RED-XL", "ZZ-9"], "one by one");
  t.deepEqual(await skus(merchant, { query: "TSH-RED-XL" }), ["TSH-RED-XL"], "no text has xl (two letters count) besides tsh and red");
  t.deepEqual(await skus(merchant, { query: "MUG-01" }), ["mug-01"], "in small letters (its title is Cup)");
  t.deepEqual(await skus(merchant, { query: "ZZ-9" }), ["ZZ-9"], "no text has its words: the SKU alone");
  t.deepEqual(await skus(merchant, { query: "TSH_" }), ["TSH_RED"], "an underscore is itself, not a wildcard");
  t.deepEqual(await skus(merchant, { query: "%" }), []);
  t.deepEqual(await skus(merchant, { query: "TsH-rEd" }), ["PLATE-1", "TSH-RED-S", "TSH-RED-XL", "ZZ-9"], "typed in any case: in capitals");
  t.deepEqual(await skus(merchant, { query: "SH-BL" }), [], "the start of a SKU, not its middle (and no text has a word of bl…)");
  t.deepEqual(await skus(merchant, { query: "TSH-RED", inStockOnly: true }), ["PLATE-1", "TSH-RED-XL", "ZZ-9"], "with the filters");
  t.deepEqual(await skus(merchant, { query: "tsh red" }), ["PLATE-1", "ZZ-9"], "two words: the text only");
});

test("two-letter words count (XL, TV, 4K); one-letter words and stopwords do not", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("TEE-XL", { title: "T-shirt XL", attributes: { size: "XL" } }) });
  await catalog.createProduct({ product: productInit("TEE-S", { title: "T-shirt S" }) });
  await catalog.createProduct({ product: productInit("TV-1", { title: "TV stand for 4K screens" }) });
  await settled(merchant, { query: "" }, ["TEE-S", "TEE-XL", "TV-1"]);
  // Before, "xl", "tv" and "4k" were dropped from queries (InnoDB indexed no word under 3 letters): "XL shirt" found every shirt.
  t.deepEqual(await skus(merchant, { query: "xl shirt" }), ["TEE-XL"]);
  t.deepEqual(await skus(merchant, { query: "TV" }), ["TV-1"], "a word, and the start of the SKU TV-1");
  t.deepEqual(await skus(merchant, { query: "4k stand" }), ["TV-1"]);
  t.deepEqual(await skus(merchant, { query: "shirt s" }), ["TEE-S", "TEE-XL"], "s is one letter: ignored");
  t.deepEqual(await skus(merchant, { query: "stand of" }), ["TV-1"], "of is a stopword: ignored");
});

test("merchant isolation: a merchant never finds another merchant's products", async (t) => {
  const [a, b] = [await h.newMerchant(), await h.newMerchant()];
  await h.catalog(a).createProduct({ product: productInit("SECRET-1", { title: "Unreleased kettle" }) });
  await h.catalog(b).createProduct({ product: productInit("PUBLIC-1", { title: "Released kettle" }) });
  await settled(a, { query: "kettle" }, ["SECRET-1"]);
  await settled(b, { query: "kettle" }, ["PUBLIC-1"]);
  t.deepEqual(await skus(b, { query: "unreleased" }), []);
  t.deepEqual(await skus(b, {}), ["PUBLIC-1"]);
});

test("GetProjectionLag reports nothing pending once the projection has caught up", async (t) => {
  const merchant = await h.newMerchant();
  await h.catalog(merchant).createProduct({ product: productInit("LAG-1") });
  await settled(merchant, {}, ["LAG-1"]);
  const lag = await waitFor("no pending events", async () => {
    const res = await h.search(merchant).getProjectionLag({});
    return res.pendingEvents === 0n ? res : undefined;
  });
  t.is(lag.lag?.seconds ?? 0n, 0n);
});

test("a query longer than the documented 1,000 characters is INVALID_ARGUMENT, not a scan", async (t) => {
  const merchant = await h.newMerchant();
  const err = await t.throwsAsync(h.search(merchant).searchProducts({ query: "mug ".repeat(300) }));
  t.is(ConnectError.from(err).code, Code.InvalidArgument);
  t.regex(ConnectError.from(err).rawMessage, /query: must be at most 1000 characters/);
  await t.notThrowsAsync(h.search(merchant).searchProducts({ query: `${"mug ".repeat(249)}mug` }), "999 characters are fine");
});
