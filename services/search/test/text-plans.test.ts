/**
 * A page of text matches is read either by the full-text indexes or by a
 * scan of the merchant's rows in SKU order tested with LIKE (store.ts
 * TextPlan), and "auto" mixes the two within a page. A user must never be
 * able to tell: every plan answers every query with the same products, in
 * the same pages. Text full of what the two compare differently if nothing
 * is done (ß and ss, œ and oe, ligatures, Turkish ı, Greek final sigma,
 * LIKE's own % and _) is searched every way and compared.
 */
import test from "ava";
import { newUlid } from "@stockroom/common";
import { dropTestDatabase, testDatabaseUrl } from "@stockroom/common/testing";
import { merchantTag, searchTerms } from "../src/domain.ts";
import {
  openSearchDatabase,
  searchProducts,
  type SearchDb,
  type SearchEntry,
  type SearchQuery,
  type TextPlan,
  upsertEntries,
} from "../src/store.ts";

const url = testDatabaseUrl("text_plans");
let db: SearchDb;

test.before(async () => {
  db = await openSearchDatabase({ url, poolSize: 4, migrate: true });
});

test.after.always(async () => {
  await db?.destroy();
  await dropTestDatabase(url);
});

const PLANS: TextPlan[] = ["index", "scan", "auto"];

function entry(merchantId: string, sku: string, title: string, more: Partial<SearchEntry> = {}): SearchEntry {
  return {
    merchant_id: merchantId,
    sku,
    product_id: newUlid(),
    version: 1,
    deleted: 0,
    title,
    description: "",
    attributes_text: "",
    price_minor: 100,
    currency: "EUR",
    stock: 1,
    status: "active",
    changed_at: new Date(),
    brand: null,
    ...more,
  };
}

/** everyPage reads every page of a query by one plan and returns the SKUs of each page. */
async function everyPage(
  merchantId: string,
  text: string,
  plan: TextPlan,
  page: number,
  filters: Partial<SearchQuery> = {},
): Promise<string[][]> {
  const match = searchTerms(text, merchantTag(merchantId));
  const pages: string[][] = [];
  let afterSku: string | undefined;
  for (;;) {
    const hits = await searchProducts(db, merchantId, { match, inStockOnly: false, ...filters, afterSku, limit: page + 1, plan });
    pages.push(hits.slice(0, page).map((h) => h.sku));
    if (hits.length <= page) return pages;
    afterSku = hits[page - 1]!.sku;
  }
}

const TEXTS = [
  "Crème brûlée torch",
  "creme brulee spoon",
  "Naïve café mug",
  "MAÑANA sunrise print",
  "Straße map of Berlin",
  "strasse sign",
  "STRASSE sticker",
  "Œuvre complète",
  "oeuvre box",
  "ﬁligran ring",
  "Filigran earrings",
  "ĲSSELMEER poster",
  "ijsselmeer map",
  "Łódź city guide",
  "Smørrebrød plate",
  "Ærø ferry ticket",
  "Þórsmörk hiking map",
  "ΟΔΟΣ street sign",
  "οδός mug",
  "Ёлка ornament",
  "елка tree",
  "İZMİR kilim",
  "Isparta halısı",
  "hali rug",
  "ｆｕｌｌ ｗｉｄｔｈ letters",
  "under_score thing",
  "100% cotton",
  "co2 sensor",
  "chai चाय मसाला",
  "日本製の抹茶セット",
  "ｶﾌｪ ラテ",
  "กาแฟสดคั่วเข้ม",
  "녹차 tea",
  "e\u0301clair box",
  "Cà phê Đà Lạt",
  "XL shirt",
  "TV stand 4K",
  "l'été indien",
  "Ǆungla tour",
  "x_y and x%y",
  "back\\slash",
  "m² tiles",
  "ﬃ office",
];

const QUERIES = [
  ...TEXTS,
  ...["creme", "CRÈME", "brul", "naive", "cafe", "manana", "strasse", "straße", "stras", "oeuvre", "œuvre", "filigran", "ﬁligran"],
  ...["ijssel", "ĳssel", "lodz", "łódź", "smorrebrod", "aero", "thorsmork", "οδος", "οδοσ", "ΟΔΟΣ", "елка", "ёлка", "izmir"],
  ...["İzmir", "halısı", "hali", "full", "ｆｕｌｌ", "under_score", "under", "score", "cotton", "co", "co2", "चाय", "抹茶", "茶"],
  ...["かふぇ", "カフェ", "คั่ว", "녹차", "eclair", "éclair", "da lat", "Đà", "xl", "tv", "4k", "ete", "été", "dzungla", "ǆungla"],
  ...["dž", "x_y", "x%y", "x", "%", "_", "back", "slash", "m2", "m²", "tiles", "office", "ffi", "ﬃ", "map", "mug sign"],
];

test("every plan finds the same products for text the index and LIKE would compare differently", async (t) => {
  const merchantId = newUlid();
  await upsertEntries(
    db,
    TEXTS.map((text, i) => entry(merchantId, `T-${String(i).padStart(3, "0")}`, text)),
  );
  const differ: string[] = [];
  let found = 0;
  for (const query of QUERIES) {
    if (searchTerms(query) === undefined) continue;
    const [index, ...others] = await Promise.all(PLANS.map((plan) => everyPage(merchantId, query, plan, 100)));
    found += index!.flat().length;
    others.forEach((pages, i) => {
      if (JSON.stringify(pages) !== JSON.stringify(index))
        differ.push(`${query}: index ${index!.flat()} vs ${PLANS[i + 1]} ${pages.flat()}`);
    });
  }
  t.deepEqual(differ, []);
  t.true(found > QUERIES.length, `${found} products found in all`);
});

test("auto pages a big catalog as the index does, words common, sparse, rare and absent, with filters and brands", async (t) => {
  const merchantId = newUlid();
  // 3,000 products, a word for each way auto can go: "common" in every 3rd (the first rows fill the page),
  // "some" in every 20th (they do not, and say how far to scan on), "front" in every 20th of the first 256 only
  // (scanned on until the rate falls too low, then the rest from the index), "sparse" in every 150th (too few to scan
  // on: the index), "rare" in 3; and a neighbour merchant's products with the same words, which no plan may return.
  const rows = Array.from({ length: 3_000 }, (_, i) => {
    const words = [
      "item",
      i % 3 === 0 ? "common" : "",
      i % 20 === 0 ? "some" : "",
      i < 256 && i % 20 === 3 ? "front" : "",
      i % 150 === 9 ? "sparse" : "",
      [5, 1_700, 2_999].includes(i) ? "rare" : "",
    ];
    // Brands compare ignoring case, not accents: "ACME" finds Acme and acme, not Acmé.
    const brand = ["Acme", "acme", "Acmé"][Math.floor(i / 7) % 4] ?? null;
    return entry(merchantId, `SKU-${String(i).padStart(5, "0")}`, words.join(" "), { stock: i % 2, deleted: i % 97 === 0 ? 1 : 0, brand });
  });
  const neighbour = newUlid();
  for (let i = 0; i < rows.length; i += 500) await upsertEntries(db, rows.slice(i, i + 500));
  await upsertEntries(db, [entry(neighbour, "SKU-00000", "common sparse rare")]);
  for (const [query, filters] of [
    ["common", {}],
    ["some", {}],
    ["front", {}],
    ["sparse", {}],
    ["rare", {}],
    ["absent", {}],
    ["common sparse", {}],
    ["item", { inStockOnly: true }],
    ["sparse", { inStockOnly: true }],
    ["common", { brand: "ACME" }],
    ["some", { brand: "ACME" }],
    ["front", { brand: "acmé" }],
    ["sparse", { brand: "ACME" }],
    ["item", { brand: "acme", inStockOnly: true }],
  ] as const) {
    const [index, scan, auto] = await Promise.all(PLANS.map((plan) => everyPage(merchantId, query, plan, 20, filters)));
    t.true(query === "absent" || index!.flat().length > 0, `${query} ${JSON.stringify(filters)} finds something`);
    t.deepEqual(auto, index, `${query} ${JSON.stringify(filters)}: auto`);
    t.deepEqual(scan, index, `${query} ${JSON.stringify(filters)}: scan`);
  }
  const common = (await everyPage(merchantId, "common", "auto", 20)).flat();
  t.is(common.length, 1_000 - rows.filter((r, i) => i % 3 === 0 && r.deleted === 1).length, "deleted rows are not found");
  t.false(common.includes("SKU-00000"), "this merchant's SKU-00000 is deleted, and the neighbour's is not this merchant's");
});
