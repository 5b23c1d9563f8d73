/**
 * `npm run bench:search`: one merchant's text search beside another
 * merchant's big catalog, in the search database.
 *
 * A big merchant holds BENCH_SEARCH_ROWS (200,000) products of
 * gen-bulk-file's text; a small one 3 ("Ultra-light desk lamp"). The small
 * merchant searches words the big catalog is full of ("light", "tea",
 * "ship") and a word only it has ("lamp"); the big one its own common
 * words and one no product has. Each query is the statement SearchProducts runs for a page of
 * 20 (store.ts readPage), BENCH_QUERIES (200) times, alternated.
 *
 * Baseline, in the same run: the same rows in a copy of the table with
 * their words and grams indexed without the merchant's tag (as
 * search_products held them before 2026-12-06), queried the same way.
 * There a query reads every merchant's postings of its words. Target: the small merchant's
 * common words take no more than 2x its own word at the p99 (tagged).
 */
import { randomBytes } from "node:crypto";
import { sql } from "kysely";
import { readInt } from "@stockroom/common";
import { dropDatabase, insertRows } from "@stockroom/common/db";
import { testDatabaseUrl } from "@stockroom/common/testing";
import { openSearchDatabase } from "@stockroom/search";
import { documentTerms, merchantTag } from "@stockroom/search/testing";
import { generateBulkFile } from "../gen-bulk-file.ts";
import { percentile, round, table, writeResults } from "./stats.ts";

const ROWS = readInt(process.env, "BENCH_SEARCH_ROWS", 200_000, 1_000, 5_000_000);
const QUERIES = readInt(process.env, "BENCH_QUERIES", 200, 10, 100_000);
const PAGE = 21;
const BIG = "01BENCHBIGBIGBIGBIGBIGBIG0";
const SMALL = "01BENCHSMALLSMALLSMALLSMA0";

const url = testDatabaseUrl(`bench_search_${randomBytes(2).toString("hex")}`);
const db = await openSearchDatabase({ url, poolSize: 4, migrate: true });
try {
  // The same table, the same rows; only the terms are untagged.
  await sql`CREATE TABLE bench_untagged LIKE search_documents`.execute(db);

  const started = performance.now();
  const lines = new TextDecoder()
    .decode(Buffer.concat([...generateBulkFile({ rows: ROWS, format: "jsonl", seed: 7 }).chunks]))
    .split("\n")
    .filter(Boolean);
  const products = [
    ...lines.map((line) => {
      const p = JSON.parse(line) as { sku: string; title: string; description: string; attributes: Record<string, string> };
      return { merchant: BIG, sku: p.sku, text: [p.title, p.description, ...Object.values(p.attributes)].join(" ") };
    }),
    ...[1, 2, 3].map((i) => ({ merchant: SMALL, sku: `LAMP-${i}`, text: `Ultra-light desk lamp ${i}` })),
  ];
  for (let i = 0; i < products.length; i += 1_000) {
    const page = products.slice(i, i + 1_000);
    for (const [table, tagged] of [
      ["search_documents", true],
      ["bench_untagged", false],
    ] as const)
      await insertRows(
        db,
        table,
        page.map(({ merchant, sku, text }) => ({
          merchant_id: merchant,
          sku,
          product_id: "01BENCHPRODUCTPRODUCTPRODU",
          version: 1,
          deleted: 0,
          title: text.slice(0, 100),
          price_minor: 100,
          currency: "EUR",
          stock: 1,
          status: "active",
          changed_at: new Date(),
          ...documentTerms(tagged ? merchantTag(merchant) : "", text),
          terms_format: 1,
        })),
      );
  }
  await sql`ANALYZE TABLE search_documents, bench_untagged`.execute(db);
  console.log(
    `search bench: ${products.length.toLocaleString("en")} products stored in ${round((performance.now() - started) / 1000, 1)} s`,
  );

  /** once runs one page's statement of a one-word query and returns its milliseconds. */
  const once = async (table: "search_documents" | "bench_untagged", merchant: string, word: string) => {
    const tag = table === "search_documents" ? merchantTag(merchant) : "";
    const t0 = performance.now();
    await sql`SELECT sku FROM ${sql.table(table)} WHERE merchant_id = ${merchant} AND deleted = 0
      AND MATCH(words) AGAINST (${`+${tag}${word}*`} IN BOOLEAN MODE) ORDER BY sku LIMIT ${PAGE}`.execute(db);
    return performance.now() - t0;
  };
  const cases = [
    { who: "small", merchant: SMALL, word: "light", kind: "common in the big catalog" },
    { who: "small", merchant: SMALL, word: "tea", kind: "common in the big catalog" },
    { who: "small", merchant: SMALL, word: "ship", kind: "common in the big catalog" },
    { who: "small", merchant: SMALL, word: "lamp", kind: "its own only" },
    { who: "big", merchant: BIG, word: "teapot", kind: "its own, common" },
    { who: "big", merchant: BIG, word: "kyoto", kind: "its own, common" },
    { who: "big", merchant: BIG, word: "zebra", kind: "in no product" },
  ];
  const times = new Map<string, { tagged: number[]; untagged: number[] }>();
  for (const c of cases) times.set(`${c.who} ${c.word}`, { tagged: [], untagged: [] });
  // Warm both indexes, then alternate tagged and untagged, case by case, each first every other round.
  for (const c of cases) for (const t of ["search_documents", "bench_untagged"] as const) await once(t, c.merchant, c.word);
  for (let i = 0; i < QUERIES; i++)
    for (const c of cases) {
      const slot = times.get(`${c.who} ${c.word}`)!;
      if (i % 2 === 0) {
        slot.tagged.push(await once("search_documents", c.merchant, c.word));
        slot.untagged.push(await once("bench_untagged", c.merchant, c.word));
      } else {
        slot.untagged.push(await once("bench_untagged", c.merchant, c.word));
        slot.tagged.push(await once("search_documents", c.merchant, c.word));
      }
    }

  const stats = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return { p50: round(percentile(sorted, 50), 2), p99: round(percentile(sorted, 99), 2) };
  };
  const results = cases.map((c) => {
    const slot = times.get(`${c.who} ${c.word}`)!;
    return { merchant: c.who, word: c.word, kind: c.kind, tagged: stats(slot.tagged), untagged: stats(slot.untagged) };
  });
  console.log(
    `\n${QUERIES} queries each, one page of ${PAGE - 1} (ms)\n` +
      table(
        ["merchant", "word", "", "tagged p50", "tagged p99", "untagged p50", "untagged p99", "untagged / tagged p99"],
        results.map((r) => [
          r.merchant,
          r.word,
          r.kind,
          r.tagged.p50,
          r.tagged.p99,
          r.untagged.p50,
          r.untagged.p99,
          `${round(r.untagged.p99 / r.tagged.p99, 1)}x`,
        ]),
      ),
  );
  const own = results.find((r) => r.merchant === "small" && r.word === "lamp")!;
  const common = results.filter((r) => r.merchant === "small" && r.word !== "lamp");
  const worst = Math.max(...common.map((r) => r.tagged.p99));
  const worstUntagged = Math.max(...common.map((r) => r.untagged.p99));
  const ratio = round(worst / own.tagged.p99, 2);
  const pass = ratio <= 2;
  console.log(
    `\ntarget: the small merchant's common words p99 <= 2x its own word's p99 (tagged): ${ratio}x (${worst} vs ${own.tagged.p99} ms) ${pass ? "PASS" : "MISS"}` +
      `\n        untagged, the same rows: ${round(worstUntagged / own.untagged.p99, 2)}x (${worstUntagged} vs ${own.untagged.p99} ms)`,
  );
  console.log(`wrote ${writeResults("search", { rows: ROWS, queries: QUERIES, results, target: { ratio, pass } })}`);
  if (!pass) process.exitCode = 1;
} finally {
  await db.destroy();
  await dropDatabase(url);
}
