/**
 * The bulk file generator is only useful if its expectations are right, so
 * these tests re-read its output with their own minimal CSV and JSON Lines
 * readers and their own rules, and hold expected.invalid to what they find,
 * line by line.
 */
import test from "ava";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { generateBulkFile, OptionError, type GenOptions } from "../gen-bulk-file.ts";

const run = promisify(execFile);
const cli = path.join(import.meta.dirname, "..", "gen-bulk-file.ts");

/** DIGITS are the currencies the generator uses, with their minor digits (ISO 4217). */
const DIGITS: Record<string, number> = { EUR: 2, USD: 2, JPY: 0, BHD: 3 };
const STATUSES = new Set(["active", "draft", "archived"]);
const TITLE_MAX = 500;

function generate(options: Partial<GenOptions> = {}) {
  const file = generateBulkFile({ rows: 2000, format: "csv", seed: 42, ...options });
  const chunks = [...file.chunks];
  return { file, chunks, bytes: Buffer.concat(chunks) };
}

// ---- independent readers ------------------------------------------------------

interface CsvRecord {
  /** The 1-based physical line the record starts on. */
  line: number;
  fields: string[];
  eol: string;
}

/** splitCsv is a minimal RFC 4180 reader that counts physical lines, newlines in quoted fields included. */
function splitCsv(text: string): CsvRecord[] {
  const records: CsvRecord[] = [];
  let i = text.startsWith("\uFEFF") ? 1 : 0;
  let line = 1;
  while (i < text.length) {
    const start = line;
    const fields: string[] = [];
    for (;;) {
      let field = "";
      if (text[i] === '"') {
        i++;
        for (;;) {
          const q = text.indexOf('"', i);
          if (q < 0) throw new Error(`unterminated quote in the record on line ${start}`);
          const part = text.slice(i, q);
          field += part;
          line += part.split("\n").length - 1;
          if (text[q + 1] === '"') {
            field += '"';
            i = q + 2;
          } else {
            i = q + 1;
            break;
          }
        }
      } else {
        let j = i;
        while (j < text.length && text[j] !== "," && text[j] !== "\n" && text[j] !== "\r") j++;
        field = text.slice(i, j);
        if (field.includes('"')) throw new Error(`stray quote on line ${start}`);
        i = j;
      }
      fields.push(field);
      if (text[i] === ",") {
        i++;
        continue;
      }
      const eol = text.startsWith("\r\n", i) ? "\r\n" : text[i] === "\n" ? "\n" : "";
      if (eol === "" && i < text.length) throw new Error(`garbage after a field on line ${line}`);
      i += eol.length;
      line++;
      records.push({ line: start, fields, eol });
      break;
    }
  }
  return records;
}

/** splitLines splits bytes at LF; the file must end with one. */
function splitLines(bytes: Buffer): Buffer[] {
  const lines: Buffer[] = [];
  let start = 0;
  for (let nl = bytes.indexOf(0x0a); nl >= 0; nl = bytes.indexOf(0x0a, start)) {
    lines.push(bytes.subarray(start, nl));
    start = nl + 1;
  }
  if (start !== bytes.length) throw new Error("the last line has no newline");
  return lines;
}

/** Item is one line's values as the reader found them; absent keys are columns the line does not name. */
interface Item {
  sku?: unknown;
  title?: unknown;
  description?: unknown;
  price?: unknown;
  currency?: unknown;
  stock?: unknown;
  status?: unknown;
  attributes?: Record<string, unknown>;
}

/**
 * classify applies the server's rules as this test reads them, returning the
 * one error code of a broken line, or problems found on a line that should be
 * valid.
 */
function createClassifier() {
  const seen = new Set<string>();
  return (item: Item): { code?: string; problems: string[] } => {
    const problems: string[] = [];
    const { sku, price, stock, currency, title } = item;
    if (sku === undefined || sku === "") return { code: "MISSING_SKU", problems };
    if (price !== undefined && !(typeof price === "number" || (typeof price === "string" && /^-?\d+(\.\d+)?$/.test(price)))) {
      return { code: "BAD_NUMBER", problems };
    }
    if (stock !== undefined && !(Number.isInteger(stock) || (typeof stock === "string" && /^-?\d+$/.test(stock)))) {
      return { code: "BAD_NUMBER", problems };
    }
    if (price !== undefined && Number(price) < 0) return { code: "NEGATIVE_PRICE", problems };
    if (stock !== undefined && Number(stock) < 0) return { code: "NEGATIVE_STOCK", problems };
    if (currency !== undefined && DIGITS[currency as string] === undefined) return { code: "UNKNOWN_CURRENCY", problems };
    if (typeof title === "string" && [...title].length > TITLE_MAX) return { code: "TOO_LONG", problems };
    if (seen.has(sku as string)) return { code: "DUPLICATE_SKU", problems };
    seen.add(sku as string);
    // A valid line must be valid in every respect.
    if (typeof sku !== "string" || sku.trim() !== sku || sku.length > 128) problems.push(`bad sku ${String(sku)}`);
    if ((price === undefined) !== (currency === undefined)) problems.push("price without currency");
    if (price !== undefined) {
      const decimals = String(price).split(".")[1]?.length ?? 0;
      if (decimals > DIGITS[currency as string]!) problems.push(`${String(price)} has too many digits for ${String(currency)}`);
    }
    if (title !== undefined && (typeof title !== "string" || title.trim() === "")) problems.push("blank title");
    if (item.status !== undefined && !STATUSES.has(item.status as string)) problems.push(`status ${String(item.status)}`);
    for (const [k, v] of Object.entries(item.attributes ?? {})) if (typeof v !== "string" || v === "") problems.push(`attribute ${k}`);
    return { problems };
  };
}

/** readCsv classifies every record of a CSV file: line → code, plus the problems of valid lines. */
function readCsv(bytes: Buffer) {
  const records = splitCsv(new TextDecoder("utf-8", { fatal: false }).decode(bytes));
  const [header, ...data] = records;
  const columns = header!.fields;
  const classify = createClassifier();
  const invalid = new Map<number, string>();
  const problems: string[] = [];
  for (const r of data) {
    if (r.fields.length !== columns.length) {
      invalid.set(r.line, "MALFORMED_LINE");
      continue;
    }
    if (r.fields.some((f) => f.includes("\uFFFD"))) {
      invalid.set(r.line, "INVALID_UTF8");
      continue;
    }
    const item: Item = {};
    columns.forEach((c, i) => {
      if (c.startsWith("attr.")) (item.attributes ??= {})[c.slice(5)] = r.fields[i];
      else (item as Record<string, unknown>)[c] = r.fields[i];
    });
    const result = classify(item);
    if (result.code) invalid.set(r.line, result.code);
    problems.push(...result.problems.map((p) => `line ${r.line}: ${p}`));
  }
  return { records, columns, data, invalid, problems };
}

/** readJsonl classifies every line of a JSON Lines file; line n is index n - 1. */
function readJsonl(bytes: Buffer) {
  const lines = splitLines(bytes);
  const classify = createClassifier();
  const invalid = new Map<number, string>();
  const problems: string[] = [];
  const items: Item[] = [];
  lines.forEach((raw, index) => {
    const line = index + 1;
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
    } catch {
      invalid.set(line, "INVALID_UTF8");
      return;
    }
    let item: Item;
    try {
      item = JSON.parse(text) as Item;
    } catch {
      invalid.set(line, "MALFORMED_LINE");
      return;
    }
    items.push(item);
    const result = classify(item);
    if (result.code) invalid.set(line, result.code);
    problems.push(...result.problems.map((p) => `line ${line}: ${p}`));
  });
  return { lines, items, invalid, problems };
}

const sorted = (m: Map<number, string>) => [...m].sort(([a], [b]) => a - b);
/** codes lists the distinct codes, in order (ava compares sets by order). */
const codes = (values: Iterable<string>) => [...new Set(values)].sort();

// ---- determinism ------------------------------------------------------------------

for (const format of ["csv", "jsonl"] as const) {
  test(`${format}: the same seed gives the same bytes and expectations, another seed other bytes`, (t) => {
    const a = generate({ format, seed: 7, invalidRate: 0.05 });
    const b = generate({ format, seed: 7, invalidRate: 0.05 });
    const c = generate({ format, seed: 8, invalidRate: 0.05 });
    t.true(a.bytes.equals(b.bytes));
    t.deepEqual(sorted(a.file.expected.invalid), sorted(b.file.expected.invalid));
    t.false(a.bytes.equals(c.bytes));
    t.notDeepEqual(sorted(a.file.expected.invalid), sorted(c.file.expected.invalid));
  });
}

// ---- shape ------------------------------------------------------------------------

test("csv: a header with the default columns, then one record per row", (t) => {
  const { bytes, file } = generate({ rows: 3000 });
  const { records, problems, invalid } = readCsv(bytes);
  t.deepEqual(records[0]!.fields, ["sku", "title", "description", "price", "currency", "stock", "status", "attr.color", "attr.size"]);
  t.is(records.length, 3001);
  t.is(invalid.size, 0);
  t.deepEqual(problems, []);
  t.is(file.expected.validLines(), 3000);
  // The data is realistic: quoting, embedded newlines and non-ASCII text all occur.
  const text = bytes.toString("utf8");
  t.true(
    records.some((r, i) => i > 0 && records[i + 1] !== undefined && records[i + 1]!.line - r.line > 1),
    "a record spans lines",
  );
  for (const s of ['""', "é", "日本", "🍵"]) t.true(text.includes(s), s);
  t.deepEqual(codes(records.slice(1).map((r) => r.fields[4]!)), ["BHD", "EUR", "JPY", "USD"]);
});

test("jsonl: one object per line with every column, attributes as an object", (t) => {
  const { bytes, file } = generate({ rows: 3000, format: "jsonl" });
  const { lines, items, problems, invalid } = readJsonl(bytes);
  t.is(lines.length, 3000);
  t.is(invalid.size, 0);
  t.deepEqual(problems, []);
  t.is(file.expected.validLines(), 3000);
  t.deepEqual(Object.keys(items[0]!), ["sku", "title", "description", "price", "currency", "stock", "status", "attributes"]);
  t.deepEqual(Object.keys(items[0]!.attributes!), ["color", "size"]);
  t.true(items.some((i) => typeof i.price === "number") && items.some((i) => typeof i.price === "string"));
  t.true(
    items.some((i) => typeof i.title === "string" && [...i.title].length === TITLE_MAX),
    "titles at the limit occur",
  );
});

// ---- invalid lines ------------------------------------------------------------------

test("csv: every expected invalid line is where an independent reader finds it, with its code", (t) => {
  const { bytes, file } = generate({ rows: 20_000, invalidRate: 0.05, seed: 3, crlf: true });
  const { invalid, problems, data } = readCsv(bytes);
  t.deepEqual(problems, []);
  t.deepEqual(sorted(file.expected.invalid), sorted(invalid));
  t.is(file.expected.validLines(), data.length - invalid.size);
  t.deepEqual(
    codes(invalid.values()),
    codes([
      "MISSING_SKU",
      "BAD_NUMBER",
      "NEGATIVE_PRICE",
      "NEGATIVE_STOCK",
      "UNKNOWN_CURRENCY",
      "TOO_LONG",
      "DUPLICATE_SKU",
      "MALFORMED_LINE",
      "INVALID_UTF8",
    ]),
  );
  // Multi-line records come before most invalid lines, so line numbers differ from record numbers.
  const last = data.at(-1)!;
  t.true(last.line > data.length + 1, `last record on line ${last.line}, record ${data.length + 1}`);
});

test("jsonl: every expected invalid line is where an independent reader finds it, with its code", (t) => {
  const { bytes, file } = generate({ rows: 20_000, invalidRate: 0.05, seed: 3, format: "jsonl" });
  const { invalid, problems, lines } = readJsonl(bytes);
  t.deepEqual(problems, []);
  t.deepEqual(sorted(file.expected.invalid), sorted(invalid));
  t.is(file.expected.validLines(), lines.length - invalid.size);
  t.is(new Set(invalid.values()).size, 9);
});

test("the invalid rate is roughly honored and codes are spread", (t) => {
  for (const rate of [0, 0.01, 0.2]) {
    const { file } = generate({ rows: 20_000, invalidRate: rate, seed: 11 });
    const n = file.expected.invalid.size;
    t.true(Math.abs(n - 20_000 * rate) <= 20_000 * rate * 0.2, `rate ${rate}: ${n} invalid`);
    t.is(file.expected.validLines() + n, 20_000);
  }
  const { file } = generate({ rows: 20_000, invalidRate: 0.2, seed: 11 });
  const byCode = new Map<string, number>();
  for (const code of file.expected.invalid.values()) byCode.set(code, (byCode.get(code) ?? 0) + 1);
  for (const [code, n] of byCode) t.true(n > 4000 / 9 / 2, `${code} ${n}`);
});

// ---- options ------------------------------------------------------------------------

test("--bom and --crlf", (t) => {
  const plain = generate({ rows: 500, invalidRate: 0.05 }).bytes;
  t.is(plain.toString("latin1", 0, 4), "sku,");
  t.false(plain.includes("\r"));
  const bom = generate({ rows: 500, invalidRate: 0.05, bom: true, crlf: true }).bytes;
  t.deepEqual([...bom.subarray(0, 3)], [0xef, 0xbb, 0xbf]);
  // Only the line ends change: newlines inside quoted fields stay LF, and the content is the same.
  t.is(bom.subarray(3).toString("latin1").replaceAll("\r\n", "\n"), plain.toString("latin1"));
  const records = splitCsv(bom.toString("utf8"));
  t.is(records[0]!.fields[0], "sku");
  t.true(records.every((r) => r.eol === "\r\n"));
  const jsonl = generate({ rows: 500, format: "jsonl", crlf: true }).bytes;
  t.true(splitLines(jsonl).every((l) => l.at(-1) === 0x0d));
  t.throws(() => generateBulkFile({ rows: 1, format: "jsonl", seed: 1, bom: true }), { instanceOf: OptionError });
});

test("column subsets: a price-only file names just sku, price and currency", (t) => {
  for (const columns of [["price"], ["currency"], ["sku", "price", "currency"]]) {
    const { bytes, file } = generate({ rows: 5000, columns, invalidRate: 0.1 });
    const { records, invalid, problems } = readCsv(bytes);
    t.deepEqual(records[0]!.fields, ["sku", "price", "currency"]);
    t.deepEqual(problems, []);
    t.deepEqual(sorted(file.expected.invalid), sorted(invalid));
    t.deepEqual(
      codes(invalid.values()),
      codes(["MISSING_SKU", "BAD_NUMBER", "NEGATIVE_PRICE", "UNKNOWN_CURRENCY", "DUPLICATE_SKU", "MALFORMED_LINE", "INVALID_UTF8"]),
    );
  }
  const jsonl = generate({ rows: 2000, format: "jsonl", columns: ["stock", "attr.color"], invalidRate: 0.1 });
  const read = readJsonl(jsonl.bytes);
  t.deepEqual(read.problems, []);
  t.deepEqual(sorted(jsonl.file.expected.invalid), sorted(read.invalid));
  t.deepEqual(Object.keys(read.items.find((i) => i.sku !== undefined)!), ["sku", "stock", "attributes"]);
  t.false([...read.invalid.values()].some((c) => c === "NEGATIVE_PRICE" || c === "TOO_LONG" || c === "UNKNOWN_CURRENCY"));
  // A sku-only file still breaks lines, and never writes a blank one.
  const skus = generate({ rows: 2000, columns: ["sku"], invalidRate: 0.2 });
  const skuRead = readCsv(skus.bytes);
  t.deepEqual(sorted(skus.file.expected.invalid), sorted(skuRead.invalid));
  t.false(skus.bytes.toString("latin1").includes("\n\n"));
});

test("bad options are refused with a reason", (t) => {
  const base: GenOptions = { rows: 10, format: "csv", seed: 1 };
  const cases: Array<[Partial<GenOptions>, RegExp]> = [
    [{ rows: -1 }, /rows/],
    [{ rows: 1.5 }, /rows/],
    [{ seed: 2 ** 32 }, /seed/],
    [{ invalidRate: 1.5 }, /invalid rate/],
    [{ columns: ["sku", "colour"] }, /unknown column "colour"/],
    [{ columns: ["attr.bad key"] }, /attribute key/],
    [{ columns: ["title", "title"] }, /twice/],
    [{ skuPrefix: " X" }, /sku prefix/],
  ];
  for (const [bad, message] of cases) t.throws(() => generateBulkFile({ ...base, ...bad }), { instanceOf: OptionError, message });
});

// ---- streaming ----------------------------------------------------------------------

test("a 50k-row file streams in bounded chunks, lazily", (t) => {
  const file = generateBulkFile({ rows: 50_000, format: "csv", seed: 5, invalidRate: 0.01 });
  const it = file.chunks[Symbol.iterator]();
  const first = it.next();
  t.false(first.done);
  // Only the first chunk exists so far: its invalid lines, not the whole file's.
  t.throws(() => file.expected.validLines(), { message: /consumed/ });
  t.true(file.expected.invalid.size < 50);
  const sizes = [first.value!.byteLength];
  for (let r = it.next(); !r.done; r = it.next()) sizes.push(r.value.byteLength);
  const total = sizes.reduce((a, b) => a + b, 0);
  t.true(total > 5_000_000, `${total} bytes`);
  t.true(Math.max(...sizes) <= 256 * 1024, `largest chunk ${Math.max(...sizes)} bytes`);
  t.true(sizes.length >= total / (256 * 1024));
  t.is(file.expected.validLines() + file.expected.invalid.size, 50_000);
  t.throws(() => [...file.chunks], { message: /only once/ });
});

// ---- command line ---------------------------------------------------------------------

test("the CLI writes what the library makes and reports rows, bytes and seconds", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "gen-bulk-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const out = path.join(dir, "f.jsonl");
  const { stdout } = await run(process.execPath, [
    cli,
    "--rows",
    "3_000",
    "--format",
    "jsonl",
    "--out",
    out,
    "--seed",
    "9",
    "--invalid-rate",
    "0.02",
    "--columns",
    "title,price,attr.color",
    "--crlf",
  ]);
  const expected = generate({
    rows: 3000,
    format: "jsonl",
    seed: 9,
    invalidRate: 0.02,
    columns: ["title", "price", "attr.color"],
    crlf: true,
  });
  t.true((await readFile(out)).equals(expected.bytes));
  t.regex(
    stdout,
    new RegExp(
      `^3000 rows \\(${expected.file.expected.validLines()} valid, ${expected.file.expected.invalid.size} invalid: .*\\), ${expected.bytes.length} bytes .* in \\d+\\.\\d\\d s`,
    ),
  );
});

test("the CLI exits 2 with a clear message on bad usage", async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [["--format", "csv", "--out", "x"], /--rows is required/],
    [["--rows", "ten", "--format", "csv", "--out", "x"], /--rows must be a whole number, got "ten"/],
    [["--rows", "1", "--format", "xml", "--out", "x"], /--format must be csv or jsonl/],
    [["--rows", "1", "--format", "csv"], /--out is required/],
    [["--rows", "1", "--format", "csv", "--out", "x", "--invalid-rate", "2"], /invalid rate must be from 0 to 1/],
    [["--rows", "1", "--format", "csv", "--out", "x", "--columns", "sku,,title"], /empty name/],
    [["--rows", "1", "--format", "csv", "--out", "x", "--colour"], /Unknown option '--colour'/],
    [["--rows", "1", "--format", "jsonl", "--out", "x", "--bom"], /byte order mark/],
  ];
  for (const [args, message] of cases) {
    const error = await t.throwsAsync(run(process.execPath, [cli, ...args]));
    t.is((error as { code?: number }).code, 2, args.join(" "));
    t.regex((error as { stderr?: string }).stderr ?? "", message);
    t.regex((error as { stderr?: string }).stderr ?? "", /usage: npm run gen:bulk/);
  }
});
