/**
 * Text beyond spaced Latin words in search. InnoDB's full-text parser
 * splits words at blanks only and keeps none under 3 letters, so "抹茶"
 * (matcha) was refused as a query with no word and could not find
 * "日本製の抹茶セット", and a Thai title was one word. The grams of runs of
 * the scripts written without spaces (domain.ts runGrams) are kept in
 * each row's grams (search_documents); fed end to end here (catalog →
 * outbox → relay → projector). Hindi's words keep their vowel signs;
 * Turkish i and ı.
 */
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { waitFor, type TestMerchant } from "@stockroom/common/testing";
import { documentTerms, dotlessSpellings, mayHaveRuns, merchantTag, runGrams, searchTerms } from "../src/domain.ts";
import { productInit, startSearchHarness, type SearchHarness } from "./harness.ts";

let h: SearchHarness;

test.before(async () => {
  h = await startSearchHarness("cjk");
  await h.startRelay();
  await h.startProjector();
});

test.after.always(async () => {
  await h?.close();
});

/** skus runs one search, every page of pageSize, and returns the SKUs found. */
async function skus(merchant: TestMerchant, query: string, pageSize = 100): Promise<string[]> {
  const out: string[] = [];
  let pageToken = "";
  do {
    const res = await h.search(merchant).searchProducts({ query, pageSize, pageToken });
    out.push(...res.results.map((r) => r.sku));
    pageToken = res.nextPageToken;
  } while (pageToken !== "");
  return out;
}

async function settled(merchant: TestMerchant, query: string, expected: string[]): Promise<void> {
  let last: string[] = [];
  await waitFor(
    `search "${query}" to find ${expected.join(", ")}`,
    async () => {
      last = await skus(merchant, query);
      return JSON.stringify(last) === JSON.stringify(expected) ? true : undefined;
    },
    15_000,
  ).catch((error: Error) => {
    throw new Error(`${error.message}: last saw ${JSON.stringify(last)}`);
  });
}

test("the query's runs of unspaced scripts become grams, its other words stay prefix words", (t) => {
  t.deepEqual(searchTerms("抹茶"), { grams: "+_抹茶" });
  t.deepEqual(searchTerms("茶"), { grams: "+__茶" }, "one letter is a gram of its own");
  t.deepEqual(searchTerms("iPhone用ケース"), { words: "+(iphone* ıphone*)", grams: "+_用け +_けー +_ーす" });
  t.deepEqual(searchTerms("ｶﾌｪ、ラテ。"), { grams: "+_かふ +_ふぇ +_らて" }, "katakana (half-width too) as hiragana; punctuation splits");
  t.deepEqual(searchTerms("녹차 mug"), { words: "+mug*", grams: "+_녹차" });
  t.is(searchTerms("a the"), undefined);
  t.deepEqual(runGrams("Mug 抹茶"), ["__抹", "_抹茶", "__茶"]);
  t.deepEqual(runGrams("Plain mug"), []);
  t.deepEqual(searchTerms("คั่ว"), { grams: "+_คั +_ั่ +_่ว" }, "Thai: its vowel and tone marks are letters of the run");
  t.deepEqual(runGrams("ไก่"), ["__ไ", "_ไก", "__ก", "_ก่", "__่"]);
  t.deepEqual(searchTerms("चाय मसाला"), { words: "+चाय* +मसाला*" }, "Devanagari's vowel signs are part of the word");
  t.deepEqual(searchTerms("cafe\u0301 NOIR"), { words: "+café* +(noir* noır*)" }, "composed (NFC)");
});

test("Chinese, Japanese and Korean words are found inside longer text, with other words and filters, page by page", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  const products = [
    productInit("JP-1", { title: "日本製の抹茶セット" }),
    productInit("JP-2", { title: "ほうじ茶 ティーバッグ", description: "香ばしい焙煎" }),
    productInit("JP-3", { title: "Ceramic mug", attributes: { color: "抹茶色" } }),
    productInit("JP-4", { title: "ｶﾌｪﾗﾃ mug" }),
    productInit("JP-5", { title: "すし皿", description: "スシ用" }),
    productInit("KO-1", { title: "녹차 티백 20개" }),
    productInit("ZH-1", { title: "绿茶礼盒", stock: 0 }),
    productInit("EN-1", { title: "Matcha whisk" }),
  ];
  for (const product of products) await catalog.createProduct({ product });
  // Every row projected (the projector may commit its batches in any order); each row's grams come with it.
  await settled(merchant, "", ["EN-1", "JP-1", "JP-2", "JP-3", "JP-4", "JP-5", "KO-1", "ZH-1"]);
  t.deepEqual(await skus(merchant, "抹茶"), ["JP-1", "JP-3"]);
  t.deepEqual(await skus(merchant, "茶"), ["JP-1", "JP-2", "JP-3", "ZH-1"]);
  t.deepEqual(await skus(merchant, "茶", 1), ["JP-1", "JP-2", "JP-3", "ZH-1"], "paged one by one");
  t.deepEqual(await skus(merchant, "抹茶セット"), ["JP-1"]);
  t.deepEqual(await skus(merchant, "セット 抹茶"), ["JP-1"]);
  t.deepEqual(await skus(merchant, "焙煎"), ["JP-2"], "in the description");
  t.deepEqual(await skus(merchant, "カフェ"), ["JP-4"], "half-width katakana in the text");
  t.deepEqual(await skus(merchant, "ｶﾌｪ"), ["JP-4"]);
  t.deepEqual(await skus(merchant, "かふぇ"), ["JP-4"], "hiragana finds katakana");
  t.deepEqual(await skus(merchant, "スシ"), ["JP-5"], "and the other way round");
  t.deepEqual(await skus(merchant, "녹차"), ["KO-1"]);
  t.deepEqual(await skus(merchant, "抹茶 mug"), ["JP-3"], "a CJK word and a word");
  t.deepEqual(await skus(merchant, "抹茶 whisk"), []);
  t.deepEqual(await skus(merchant, "茶道"), []);
  const inStock = await h.search(merchant).searchProducts({ query: "茶", inStockOnly: true });
  t.deepEqual(
    inStock.results.map((r) => r.sku),
    ["JP-1", "JP-2", "JP-3"],
  );
  const other = await h.newMerchant();
  t.deepEqual(await skus(other, "抹茶"), [], "another merchant's products are not found");
  const error = await t.throwsAsync(h.search(merchant).searchProducts({ query: "a b" }));
  t.is(ConnectError.from(error).code, Code.InvalidArgument);

  // A change moves the grams with the row; a deleted product is found no more.
  await catalog.updateProduct({ product: { sku: "JP-1", title: "日本製の煎茶セット" }, updateMask: { paths: ["title"] } });
  await settled(merchant, "抹茶", ["JP-3"]);
  t.deepEqual(await skus(merchant, "煎茶"), ["JP-1"]);
  await catalog.updateProduct({ product: { sku: "JP-1", title: "Sencha set" }, updateMask: { paths: ["title"] } });
  await settled(merchant, "煎茶", []);
  await catalog.deleteProduct({ sku: "JP-3" });
  await settled(merchant, "抹茶", []);
});

test("Thai, written without spaces, is found inside longer text; Hindi words whole and as prefixes", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("TH-1", { title: "กาแฟสดคั่วเข้ม", description: "เมล็ดกาแฟอาราบิก้า" }) });
  await catalog.createProduct({ product: productInit("TH-2", { title: "ชาเขียวมัทฉะ" }) });
  await catalog.createProduct({ product: productInit("HI-1", { title: "मसाला चाय पत्ती" }) });
  await catalog.createProduct({ product: productInit("HI-2", { title: "चायदानी", description: "Teapot" }) });
  await settled(merchant, "", ["HI-1", "HI-2", "TH-1", "TH-2"]);
  // Before: a Thai title was one word, found only from its start ("กาแฟ"), and a query of it whole found nothing.
  t.deepEqual(await skus(merchant, "คั่ว"), ["TH-1"], "roasted, in the middle of the title");
  t.deepEqual(await skus(merchant, "กาแฟสดคั่วเข้ม"), ["TH-1"], "the whole title");
  t.deepEqual(await skus(merchant, "กาแฟ"), ["TH-1"], "coffee, in the title and the description");
  t.deepEqual(await skus(merchant, "มัทฉะ"), ["TH-2"]);
  t.deepEqual(await skus(merchant, "กาแฟ ชา"), [], "every word required");
  // Before: every Hindi query was refused ("चाय" split at its vowel sign into two one-letter words).
  t.deepEqual(await skus(merchant, "चाय"), ["HI-1", "HI-2"], "tea, whole and as the start of teapot");
  t.deepEqual(await skus(merchant, "मसाला चाय"), ["HI-1"]);
  t.deepEqual(await skus(merchant, "पत्ती"), ["HI-1"]);
});

test("a product's words and grams are indexed behind its merchant's tag, as its queries look for them", (t) => {
  const tag = merchantTag("01M94MVQB6YYW4S62E28ZEE9N0");
  t.regex(tag, /^[0-9a-f]{8}$/);
  t.not(merchantTag("01M94MVQB6YYW4S62E28ZEE9N1"), tag);
  t.deepEqual(documentTerms(tag, "Crème MUG for 2 the 抹茶 fans, crème"), {
    words: [`${tag}crème`, `${tag}mug`, `${tag}fans`].join(" "),
    grams: [`${tag}__抹`, `${tag}_抹茶`, `${tag}__茶`].join(" "),
  });
  t.deepEqual(searchTerms("crème mugs 抹茶", tag), { words: `+${tag}crème* +${tag}mugs*`, grams: `+${tag}_抹茶` });
  const long = "x".repeat(100);
  t.is(documentTerms(tag, long).words, `${tag}${"x".repeat(75)}`, "past 75 letters, a word is indexed by its start");
  t.is(searchTerms(long, tag)?.words, `+${tag}${"x".repeat(75)}*`, "and looked for by it");
});

test("every letter of a run is in a range mayHaveRuns looks at (documentTerms skips the runs of text outside them)", (t) => {
  const missed: string[] = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const letter = String.fromCodePoint(cp);
    if (!mayHaveRuns(letter) && runGrams(letter).length > 0) missed.push(`U+${cp.toString(16).toUpperCase()}`);
  }
  t.deepEqual(missed, []);
  t.false(mayHaveRuns("Ships in 2 days, 100% cotton — déjà vu"));
});

test("a word with i or ı is looked for with either letter, as Turkish writes them", (t) => {
  t.deepEqual(dotlessSpellings("mug"), ["mug"]);
  t.deepEqual(dotlessSpellings("halisi").sort(), ["halisi", "halisı", "halısi", "halısı"]);
  t.is(dotlessSpellings("kırmızı").length, 8, "three places: every spelling");
  const five = dotlessSpellings("bilgisayarımızı");
  t.is(five.length, 8, "five places: the first two every way, the rest all i or all ı");
  t.true(five.includes("bilgisayarımızı") && five.includes("bilgisayarimizi"), "as typed too, whatever its length");
  t.true(dotlessSpellings("bilgısayarimızi").includes("bilgısayarimızi"), "a mixed spelling past the first two is kept as typed");
  t.deepEqual(searchTerms("HALI mug"), { words: "+(hali* halı*) +mug*" });
  t.deepEqual(searchTerms("İZMİR"), { words: "+(izmir* ızmir* izmır* ızmır*)" }, "İ is i: its combining dot is dropped");
});

test("letters the collation holds apart (ł, ø, æ, đ, ð, þ, ħ) are indexed and looked for as typed without them", (t) => {
  const tag = merchantTag("01TESTSTROKES");
  t.is(
    documentTerms(tag, "Łódź Smørrebrød Æble Đà Lạt Þórsmörk").words,
    // Accents are left to the collation (ó = o).
    ["lódź", "smorrebrod", "aeble", "dà", "lạt", "thórsmörk"].map((w) => tag + w).join(" "),
  );
  t.deepEqual(searchTerms("ŁÓDŹ"), { words: "+lódź*" });
  t.deepEqual(searchTerms("smørrebrød"), { words: "+smorrebrod*" });
  t.deepEqual(searchTerms("æ"), { words: "+ae*" }, "æ alone is two letters: it counts");
  t.is(searchTerms("ø"), undefined, "ø alone is one letter: it does not");
});

test("Polish, Danish and Vietnamese text is found typed without its letters", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("PL-1", { title: "Pierogi z Łodzi", description: "Ręcznie lepione" }) });
  await catalog.createProduct({ product: productInit("DK-1", { title: "Smørrebrød med æble" }) });
  await catalog.createProduct({ product: productInit("VN-1", { title: "Cà phê Đà Lạt" }) });
  await settled(merchant, "", ["DK-1", "PL-1", "VN-1"]);
  // Before: the collation holds ł, ø, æ and đ apart from l, o, ae and d, and these found nothing.
  t.deepEqual(await skus(merchant, "lodzi"), ["PL-1"]);
  t.deepEqual(await skus(merchant, "ŁODZI"), ["PL-1"]);
  t.deepEqual(await skus(merchant, "smorrebrod aeble"), ["DK-1"]);
  t.deepEqual(await skus(merchant, "smørrebrød"), ["DK-1"], "as written too");
  t.deepEqual(await skus(merchant, "da lat"), ["VN-1"]);
  t.deepEqual(await skus(merchant, "Đà"), ["VN-1"]);
});

test("Turkish text is found typed in capitals, in small letters, or without its letters", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  await catalog.createProduct({ product: productInit("TR-1", { title: "El dokuma Isparta halısı", description: "Kırmızı yün" }) });
  await catalog.createProduct({ product: productInit("TR-2", { title: "İZMİR KİLİMİ" }) });
  await catalog.createProduct({ product: productInit("TR-3", { title: "Halibut fillet" }) });
  await settled(merchant, "", ["TR-1", "TR-2", "TR-3"]);
  // Before: "HALISI" lower-cased to "halisi", which the collation holds apart from "halısı", and found nothing.
  t.deepEqual(await skus(merchant, "HALISI"), ["TR-1"]);
  t.deepEqual(await skus(merchant, "halısı"), ["TR-1"]);
  t.deepEqual(await skus(merchant, "hali"), ["TR-1", "TR-3"], "typed without ı; the start of halibut too");
  t.deepEqual(await skus(merchant, "KIRMIZI"), ["TR-1"]);
  t.deepEqual(await skus(merchant, "kirmizi yun"), ["TR-1"], "typed without any Turkish letter");
  t.deepEqual(await skus(merchant, "izmir kilimi"), ["TR-2"], "İ in the text");
  t.deepEqual(await skus(merchant, "İzmir"), ["TR-2"], "İ in the query");
  t.deepEqual(await skus(merchant, "ısparta"), ["TR-1"]);
});
