import test, { type ExecutionContext } from "ava";
import { BulkFileError, ItemBound, parseBulkFile, type ParsedLine, type ParseOptions } from "../src/parse/index.ts";
import type { ParsedLine as StagedLine } from "../src/stage.ts";

/** What every message about text that is not UTF-8 ends with. */
const NOT_UTF8_HINT = "save the file as UTF-8, not in a legacy encoding such as Windows-1252 or Shift_JIS";

// Parsed lines feed stageLines as they are: this fails to compile if the shapes drift apart.
const _feedsStaging: (source: AsyncIterable<Uint8Array>, options: ParseOptions) => AsyncIterable<StagedLine> = parseBulkFile;

const utf8 = (text: string) => new Uint8Array(Buffer.from(text, "utf8"));
const concat = (...parts: (string | number[])[]) =>
  new Uint8Array(Buffer.concat(parts.map((p) => (typeof p === "string" ? Buffer.from(p, "utf8") : Buffer.from(p)))));

/** pieces yields bytes cut at the given sizes (cycled), each piece a fresh copy. */
async function* pieces(bytes: Uint8Array, sizes: readonly number[]): AsyncGenerator<Uint8Array> {
  for (let i = 0, k = 0; i < bytes.length; k++) {
    const n = sizes[k % sizes.length]!;
    yield bytes.slice(i, i + n);
    i += n;
  }
}

/** reused yields every piece in the same buffer, overwritten once the parser asks for more, as a read loop does. */
async function* reused(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  const buf = new Uint8Array(size);
  for (let i = 0; i < bytes.length; i += size) {
    const n = Math.min(size, bytes.length - i);
    buf.fill(0x22).set(bytes.subarray(i, i + n));
    yield buf.subarray(0, n);
  }
}

const LIMITS = { maxBytes: 10_000_000, maxItems: 1_000_000 };

async function collect(source: AsyncIterable<Uint8Array>, options: ParseOptions): Promise<ParsedLine[]> {
  const out: ParsedLine[] = [];
  for await (const line of parseBulkFile(source, options)) out.push(line);
  return out;
}

function parse(input: string | Uint8Array, options: Partial<ParseOptions> = {}): Promise<ParsedLine[]> {
  const bytes = typeof input === "string" ? utf8(input) : input;
  return collect(pieces(bytes, [bytes.length || 1]), { format: "csv", ...LIMITS, ...options });
}

const jsonl = (input: string | Uint8Array, options: Partial<ParseOptions> = {}) => parse(input, { format: "jsonl", ...options });

/** fileError parses input and returns the BulkFileError it must end with, and the lines before it. */
async function fileError(t: ExecutionContext, input: string | Uint8Array | AsyncIterable<Uint8Array>, options: Partial<ParseOptions> = {}) {
  const bytes = typeof input === "string" ? utf8(input) : input;
  const source = bytes instanceof Uint8Array ? pieces(bytes, [bytes.length || 1]) : bytes;
  const lines: ParsedLine[] = [];
  const error = await t.throwsAsync(
    async () => {
      for await (const line of parseBulkFile(source, { format: "csv", ...LIMITS, ...options })) lines.push(line);
    },
    { instanceOf: BulkFileError },
  );
  t.is(error.name, "BulkFileError");
  return { code: error.code, line: error.line, message: error.message, column: error.column, lines };
}

/** codes shortens invalid lines to their line, sku and "field:CODE" list. */
const codes = (lines: ParsedLine[]) =>
  lines.map((l) =>
    l.kind === "valid"
      ? { line: l.line, valid: l.item.sku }
      : { line: l.line, sku: l.sku, errors: l.errors.map((e) => `${e.field}:${e.code}`) },
  );

// ---- a file that exercises every byte-level path --------------------------------------

const CSV_FILE = concat(
  "\uFEFFsku,title,description,price,currency,stock,status,attr.color\r\n",
  'A-1,Teapot 日本,"Line one\r\nline ""two""\nline three",12.50,USD,3,active,red\r\n',
  "\r\n",
  "A-2,Crème 🍵,,1000,JPY,0,Draft,\r\n",
  "A-3,Bad,desc,1.234,USD,-2,gone,blue\r\n",
  "A-1,Dup,x,1,EUR,1,archived,\r\n",
  "A-4,Br",
  [0xff],
  "ken,d,3,BHD,1,active,green\r\n",
  'A-5,a"b,d,1,USD,1,active,\r\n',
  'A-6,"x"y,d,1,USD,1,active,\r\n',
  "A-7,short\r\n",
  'A-8,"T",d,0.125,BHD,7,active,"multi\nline"\r\n',
  'A-9,Open,"oops,1,USD,1,active,\r\nA-10,never,read,1,USD,1,active,\r\n',
);

const CSV_EXPECTED: ParsedLine[] = [
  {
    line: 2,
    kind: "valid",
    item: {
      sku: "A-1",
      title: "Teapot 日本",
      description: 'Line one\r\nline "two"\nline three',
      priceMinor: 1250,
      currency: "USD",
      stock: 3,
      status: "active",
      attributes: { color: "red" },
    },
  },
  {
    line: 6,
    kind: "valid",
    item: {
      sku: "A-2",
      title: "Crème 🍵",
      description: "",
      priceMinor: 1000,
      currency: "JPY",
      stock: 0,
      status: "draft",
      attributes: { color: "" },
    },
  },
  {
    line: 7,
    kind: "invalid",
    sku: "A-3",
    errors: [
      { field: "price", code: "BAD_NUMBER", message: 'price "1.234" has 3 decimals; USD has 2' },
      { field: "stock", code: "NEGATIVE_STOCK", message: "stock must not be negative" },
      { field: "status", code: "BAD_STATUS", message: 'status "gone" is not one of active, draft, archived' },
    ],
  },
  { line: 8, kind: "invalid", sku: "A-1", errors: [{ field: "sku", code: "DUPLICATE_SKU", message: 'sku "A-1" is already on line 2' }] },
  {
    line: 9,
    kind: "invalid",
    sku: "A-4",
    errors: [{ field: "title", code: "INVALID_UTF8", message: `title is not valid UTF-8: ${NOT_UTF8_HINT}` }],
  },
  {
    line: 10,
    kind: "invalid",
    sku: "A-5",
    errors: [
      {
        field: "title",
        code: "MALFORMED_LINE",
        message: "title has a quote inside an unquoted field; quote the whole field and double the quote",
      },
    ],
  },
  {
    line: 11,
    kind: "invalid",
    sku: "A-6",
    errors: [{ field: "title", code: "MALFORMED_LINE", message: "title has text after its closing quote" }],
  },
  {
    line: 12,
    kind: "invalid",
    sku: "A-7",
    errors: [{ field: "", code: "MALFORMED_LINE", message: "the line has 2 fields; the header has 8 columns" }],
  },
  {
    line: 13,
    kind: "valid",
    item: {
      sku: "A-8",
      title: "T",
      description: "d",
      priceMinor: 125,
      currency: "BHD",
      stock: 7,
      status: "active",
      attributes: { color: "multi\nline" },
    },
  },
  {
    line: 15,
    kind: "invalid",
    sku: "A-9",
    errors: [
      {
        field: "",
        code: "MALFORMED_LINE",
        message: "a quoted field is not closed before the end of the file: lines 15–16 are one unfinished record",
      },
    ],
  },
];

const JSONL_FILE = concat(
  '{"sku":"J-1","title":"Teapot 日本","price":12.50,"currency":"USD","stock":3,"attributes":{"color":"red 🍵"}}\r\n',
  "\n",
  "   \r\n",
  '{"sku":"J-2","price":"5","currency":"JPY"}\n',
  '{"sku":"J-3","title":"Br',
  [0xe6, 0x97],
  'ken"}\n',
  '{"sku":"J-4",\n',
  '{"sku":"J-1","stock":1}\n',
  '{"sku":"J-5","description":"multi\\nline","status":"ARCHIVED"}',
);

const JSONL_EXPECTED: ParsedLine[] = [
  {
    line: 1,
    kind: "valid",
    item: { sku: "J-1", title: "Teapot 日本", priceMinor: 1250, currency: "USD", stock: 3, attributes: { color: "red 🍵" } },
  },
  { line: 4, kind: "valid", item: { sku: "J-2", priceMinor: 5, currency: "JPY" } },
  {
    line: 5,
    kind: "invalid",
    sku: "J-3",
    errors: [{ field: "", code: "INVALID_UTF8", message: `the line is not valid UTF-8: ${NOT_UTF8_HINT}` }],
  },
  {
    line: 6,
    kind: "invalid",
    sku: "",
    errors: [
      {
        field: "",
        code: "MALFORMED_LINE",
        message: "the line is not valid JSON: Expected double-quoted property name in JSON at position 13 (line 1 column 14)",
      },
    ],
  },
  { line: 7, kind: "invalid", sku: "J-1", errors: [{ field: "sku", code: "DUPLICATE_SKU", message: 'sku "J-1" is already on line 1' }] },
  { line: 8, kind: "valid", item: { sku: "J-5", description: "multi\nline", status: "archived" } },
];

test("CSV: BOM, CRLF, quoted commas, quotes and newlines; line numbers are physical; bad lines never stop good ones", async (t) => {
  t.deepEqual(await parse(CSV_FILE), CSV_EXPECTED);
});

test("JSON Lines: blank lines skipped but counted, CRLF, a bad line in the middle, a last line without a newline", async (t) => {
  t.deepEqual(await jsonl(JSONL_FILE), JSONL_EXPECTED);
});

/** mulberry32: a seeded generator, so a failing chunking can be replayed. */
function random(seed: number) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let z = Math.imul(seed ^ (seed >>> 15), seed | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}

for (const [format, file, expected] of [
  ["csv", CSV_FILE, CSV_EXPECTED],
  ["jsonl", JSONL_FILE, JSONL_EXPECTED],
] as const) {
  test(`${format}: any chunking gives the same lines (byte by byte, every split point, random sizes, a reused buffer)`, async (t) => {
    const options = { format, ...LIMITS };
    t.deepEqual(await collect(pieces(file, [1]), options), expected, "byte by byte");
    for (let cut = 0; cut <= file.length; cut++) {
      const lines = await collect(pieces(file, [cut || file.length, file.length]), options);
      if (!t.deepEqual(lines, expected, `split at byte ${cut}`)) return;
    }
    for (let seed = 1; seed <= 50; seed++) {
      const next = random(seed);
      const sizes = Array.from({ length: 64 }, () => 1 + Math.floor(next() * (seed % 2 ? 7 : 300)));
      if (!t.deepEqual(await collect(pieces(file, sizes), options), expected, `seed ${seed}: ${sizes.join(",")}`)) return;
    }
    for (const size of [1, 2, 3, 5, 64]) t.deepEqual(await collect(reused(file, size), options), expected, `reused buffer of ${size}`);
  });
}

test("price: decimal major units become integer minor units by the currency's digits (JPY 0, USD 2, BHD 3)", async (t) => {
  const rows = [
    ["P1", "5", "JPY"],
    ["P2", "5.0", "JPY"],
    ["P3", "12.34", "USD"],
    ["P4", "0.5", "USD"],
    ["P5", "5", "USD"],
    ["P6", "12.345", "USD"],
    ["P7", "1.234", "BHD"],
    ["P8", "1.2345", "BHD"],
    ["P9", "007.10", "EUR"],
    ["P10", "9999999999999.99", "USD"],
    ["P11", "10000000000000.01", "USD"],
    ["P12", "1e3", "USD"],
    ["P13", '"1,000"', "USD"],
    ["P14", "+5", "USD"],
    ["P15", ".5", "USD"],
    ["P16", "5.", "USD"],
    ["P17", " 5", "USD"],
    ["P18", "-1.00", "USD"],
    ["P19", "", "USD"],
    ["P20", "1.5", "XYZ"],
    ["P21", "-1.999", "USD"],
  ];
  const lines = await parse(`sku,price,currency\n${rows.map((r) => r.join(",")).join("\n")}\n`);
  const priceOf = (l: ParsedLine) => (l.kind === "valid" ? l.item.priceMinor : l.errors.map((e) => `${e.code}: ${e.message}`).join(" | "));
  t.deepEqual(Object.fromEntries(lines.map((l, i) => [rows[i]![0]!, priceOf(l)])), {
    P1: 5,
    P2: 'BAD_NUMBER: price "5.0" has 1 decimals; JPY has 0',
    P3: 1234,
    P4: 50,
    P5: 500,
    P6: 'BAD_NUMBER: price "12.345" has 3 decimals; USD has 2',
    P7: 1234,
    P8: 'BAD_NUMBER: price "1.2345" has 4 decimals; BHD has 3',
    P9: 710,
    P10: 999999999999999,
    P11: "TOO_LARGE: price must be at most 1000000000000000 minor units",
    P12: 'BAD_NUMBER: price "1e3" is not a decimal number such as 12.34',
    P13: 'BAD_NUMBER: price "1,000" is not a decimal number such as 12.34',
    P14: 'BAD_NUMBER: price "+5" is not a decimal number such as 12.34',
    P15: 'BAD_NUMBER: price ".5" is not a decimal number such as 12.34',
    P16: 'BAD_NUMBER: price "5." is not a decimal number such as 12.34',
    P17: 'BAD_NUMBER: price " 5" is not a decimal number such as 12.34',
    P18: "NEGATIVE_PRICE: price must not be negative",
    P19: 'BAD_NUMBER: price "" is not a decimal number such as 12.34',
    P20: 'UNKNOWN_CURRENCY: currency "XYZ" is not an ISO 4217 currency code',
    P21: 'NEGATIVE_PRICE: price must not be negative | BAD_NUMBER: price "-1.999" has 3 decimals; USD has 2',
  });
  t.is(lines[1]!.line, 3, "line numbers follow the file");
});

test("a file touches only the columns it names: a price file yields items with only sku, price and currency", async (t) => {
  const lines = await parse("SKU , Currency,price\r\nA,EUR,9.99\r\nB,JPY,120");
  t.deepEqual(lines, [
    { line: 2, kind: "valid", item: { sku: "A", currency: "EUR", priceMinor: 999 } },
    { line: 3, kind: "valid", item: { sku: "B", currency: "JPY", priceMinor: 120 } },
  ]);
  for (const l of lines) t.deepEqual(Object.keys(l.kind === "valid" ? l.item : {}).sort(), ["currency", "priceMinor", "sku"]);
  t.deepEqual(await parse("sku,stock\nA,0\nB,2147483647\nC,2147483648\nD,1.5\n"), [
    { line: 2, kind: "valid", item: { sku: "A", stock: 0 } },
    { line: 3, kind: "valid", item: { sku: "B", stock: 2147483647 } },
    { line: 4, kind: "invalid", sku: "C", errors: [{ field: "stock", code: "TOO_LARGE", message: "stock must be at most 2147483647" }] },
    { line: 5, kind: "invalid", sku: "D", errors: [{ field: "stock", code: "BAD_NUMBER", message: 'stock "1.5" is not a whole number' }] },
  ]);
});

test("attributes come from attr.<name> columns; an empty cell is kept (it removes the key); the catalog's limits apply", async (t) => {
  const long = "x".repeat(1001);
  const lines = await parse(`sku,attr.color,attr.Size_2\nA,red,"XL, tall"\nB,,M\nC,${long},S\n`);
  t.deepEqual(lines, [
    { line: 2, kind: "valid", item: { sku: "A", attributes: { color: "red", Size_2: "XL, tall" } } },
    { line: 3, kind: "valid", item: { sku: "B", attributes: { color: "", Size_2: "M" } } },
    {
      line: 4,
      kind: "invalid",
      sku: "C",
      errors: [{ field: "attr.color", code: "TOO_LONG", message: 'attribute "color": value must be at most 1000 characters' }],
    },
  ]);
  t.deepEqual(await parse("sku,attr.__proto__\nA,x\n"), [
    { line: 2, kind: "valid", item: { sku: "A", attributes: JSON.parse('{"__proto__":"x"}') } },
  ]);
});

test("every problem of an item is reported, each with its column and code", async (t) => {
  const title = "t".repeat(501);
  const lines = await parse(
    "sku,title,description,price,currency,stock,status\n" +
      `,${title},${"d".repeat(10_001)},-5,XYZ,x,sold\n` +
      `${"s".repeat(129)}, ,ok,1,EUR,1,active\n` +
      ` padded,T,ok,1,EUR,1,active\n` +
      `ok,T,ok,1,,-1,active\n`,
  );
  t.deepEqual(lines, [
    {
      line: 2,
      kind: "invalid",
      sku: "",
      errors: [
        { field: "sku", code: "MISSING_SKU", message: "sku is required" },
        { field: "price", code: "NEGATIVE_PRICE", message: "price must not be negative" },
        { field: "stock", code: "BAD_NUMBER", message: 'stock "x" is not a whole number' },
        { field: "status", code: "BAD_STATUS", message: 'status "sold" is not one of active, draft, archived' },
        { field: "title", code: "TOO_LONG", message: "title must be at most 500 characters" },
        { field: "description", code: "TOO_LONG", message: "description must be at most 10000 characters" },
        { field: "currency", code: "UNKNOWN_CURRENCY", message: 'currency "XYZ" is not an ISO 4217 currency code' },
      ],
    },
    {
      line: 3,
      kind: "invalid",
      sku: "s".repeat(129),
      errors: [
        { field: "sku", code: "TOO_LONG", message: "sku must be at most 128 characters" },
        { field: "title", code: "MISSING_TITLE", message: "title is required" },
      ],
    },
    {
      line: 4,
      kind: "invalid",
      sku: " padded",
      errors: [{ field: "sku", code: "BAD_SKU", message: "sku must not contain control characters or surrounding spaces" }],
    },
    {
      line: 5,
      kind: "invalid",
      sku: "ok",
      errors: [
        { field: "stock", code: "NEGATIVE_STOCK", message: "stock must not be negative" },
        { field: "currency", code: "UNKNOWN_CURRENCY", message: 'currency "" is not an ISO 4217 currency code' },
      ],
    },
  ]);
});

test("DUPLICATE_SKU: a sku seen before (even on an invalid line) makes the later line invalid, naming the first; missing skus are no duplicates", async (t) => {
  const lines = await parse("sku,stock\nA,-1\nA,1\n,1\n,2\nB,1\nB,1\nB,1\n");
  t.deepEqual(codes(lines), [
    { line: 2, sku: "A", errors: ["stock:NEGATIVE_STOCK"] },
    { line: 3, sku: "A", errors: ["sku:DUPLICATE_SKU"] },
    { line: 4, sku: "", errors: ["sku:MISSING_SKU"] },
    { line: 5, sku: "", errors: ["sku:MISSING_SKU"] },
    { line: 6, valid: "B" },
    { line: 7, sku: "B", errors: ["sku:DUPLICATE_SKU"] },
    { line: 8, sku: "B", errors: ["sku:DUPLICATE_SKU"] },
  ]);
  t.is(lines[6]!.kind === "invalid" && lines[6]!.errors[0]!.message, 'sku "B" is already on line 6');
});

test("CSV line shapes: an empty last field, a quoted empty sku, a quoted CRLF, a lone CR, a CR after a closing quote, no final newline", async (t) => {
  const lines = await parse('sku,title\nA,\n"",x\n"B","t\r\n2"\nC,a\rb\nD,"q"\r\n\n"G"\r,g\nE,e');
  t.deepEqual(codes(lines), [
    { line: 2, sku: "A", errors: ["title:MISSING_TITLE"] },
    { line: 3, sku: "", errors: ["sku:MISSING_SKU"] },
    { line: 4, valid: "B" },
    { line: 6, valid: "C" },
    { line: 7, valid: "D" },
    { line: 9, sku: "", errors: ["sku:MALFORMED_LINE"] },
    { line: 10, valid: "E" },
  ]);
  t.deepEqual(
    lines.slice(2).map((l) => l.kind === "valid" && l.item.title),
    ["t\r\n2", "a\rb", "q", false, "e"],
  );
});

test("CSV file errors: columns are checked before any line is read", async (t) => {
  const cases: [string, string, number, string, string | undefined][] = [
    [
      "sku,colour\nA,red\n",
      "UNKNOWN_COLUMN",
      1,
      'unknown column "colour"; columns are sku, title, description, price, currency, stock, status, gtin, brand, compare_at_price, weight_grams and attr.<name>',
      "colour",
    ],
    ["title,price,currency\n", "MISSING_SKU_COLUMN", 1, "the header has no sku column", undefined],
    ["sku,Title,title\n", "DUPLICATE_COLUMN", 1, 'column "title" is named twice', "title"],
    ["sku,attr.a,ATTR.a\n", "DUPLICATE_COLUMN", 1, 'column "attr.a" is named twice', "attr.a"],
    ["sku,price\nA,1\n", "MISSING_CURRENCY_COLUMN", 1, "a price column needs a currency column", "price"],
    ["sku,currency\nA,EUR\n", "MISSING_PRICE_COLUMN", 1, "a currency column needs a price column", "currency"],
    [
      "sku,attr.bad key\n",
      "BAD_COLUMN",
      1,
      'column "attr.bad key": attribute key must be 1 to 64 characters of [A-Za-z0-9_.-]',
      "attr.bad key",
    ],
    ["sku,attr.\n", "BAD_COLUMN", 1, 'column "attr.": attribute key must be 1 to 64 characters of [A-Za-z0-9_.-]', "attr."],
    [
      `sku,${Array.from({ length: 51 }, (_, i) => `attr.a${i}`).join(",")}\n`,
      "TOO_MANY_COLUMNS",
      1,
      "at most 50 attr.<name> columns, not 51",
      undefined,
    ],
    ['sku,ti"tle\n', "MALFORMED_HEADER", 1, "column 2 of the header is badly quoted", undefined],
    ['sku,"title\n', "MALFORMED_HEADER", 1, "a quoted column name is not closed", undefined],
    ["", "EMPTY_FILE", 1, "the file is empty: it has no header row", undefined],
    ["\uFEFF", "EMPTY_FILE", 1, "the file is empty: it has no header row", undefined],
    ["\r\n\n\r\n", "EMPTY_FILE", 4, "the file is empty: it has no header row", undefined],
    [
      "\n\nsku,nope\n",
      "UNKNOWN_COLUMN",
      3,
      'unknown column "nope"; columns are sku, title, description, price, currency, stock, status, gtin, brand, compare_at_price, weight_grams and attr.<name>',
      "nope",
    ],
  ];
  for (const [input, code, line, message, column] of cases) {
    const error = await fileError(t, input);
    t.deepEqual(error, { code, line, message, column, lines: [] }, JSON.stringify(input));
  }
  t.deepEqual(await parse("sku,title\r\n"), [], "a header without items is an empty job, not an error");
  t.deepEqual(await parse("sku\nA\n"), [{ line: 2, kind: "valid", item: { sku: "A" } }], "one column is no other delimiter");
});

test("CSV saved the way spreadsheets often save it: semicolons or tabs, UTF-16, a legacy encoding, or JSON Lines; each is named", async (t) => {
  const delimiter = (name: string) =>
    `the header's columns are separated by ${name}, not commas: save the file as comma-separated CSV (in Excel: CSV UTF-8), with "." as the decimal point`;
  const cases: [string | Uint8Array, string, string][] = [
    ["sku;title;price;currency\nMUG-1;Mug;12,90;EUR\n", "WRONG_DELIMITER", delimiter("semicolons")],
    ['"SKU";"Title"\r\n', "WRONG_DELIMITER", delimiter("semicolons")],
    ["sku\ttitle\nMUG-1\tMug\n", "WRONG_DELIMITER", delimiter("tabs")],
    [
      Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from("sku,title\r\nMUG-1,Mug\r\n", "utf16le")]),
      "NOT_UTF8",
      "the file is UTF-16, not UTF-8 (it starts with a UTF-16 byte order mark): save the file as UTF-8 (in Excel: CSV UTF-8)",
    ],
    [
      Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from("sku")]),
      "NOT_UTF8",
      "the file is UTF-16, not UTF-8 (it starts with a UTF-16 byte order mark): save the file as UTF-8 (in Excel: CSV UTF-8)",
    ],
    [Buffer.from("sku,titr\xe9\n", "latin1"), "MALFORMED_HEADER", `the header row is not valid UTF-8: ${NOT_UTF8_HINT}`],
    [
      '{"sku":"MUG-1","title":"Mug"}\n',
      "WRONG_FORMAT",
      "the header row is a JSON object, not CSV column names: upload the file as JSON Lines (format jsonl)",
    ],
  ];
  for (const [input, code, message] of cases) {
    const error = await fileError(t, input);
    t.deepEqual([error.code, error.line, error.message], [code, 1, message], JSON.stringify(String(input)));
  }
});

test("JSON Lines: a CSV file or a UTF-16 file is named as such; a CSV-like line later is only that line's error", async (t) => {
  for (const input of ["sku,title,price,currency\nMUG-1,Mug,12.90,EUR\n", "\n  title;SKU\n"]) {
    const error = await fileError(t, input, { format: "jsonl" });
    t.deepEqual(
      [error.code, error.message],
      ["WRONG_FORMAT", "the first line is a CSV header, not a JSON object: upload the file as CSV (format csv)"],
      input,
    );
  }
  const utf16 = await fileError(t, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"sku":"A"}\n', "utf16le")]), {
    format: "jsonl",
  });
  t.is(utf16.code, "NOT_UTF8");
  const lines = await parse('{"sku":"A"}\nsku,title\n', { format: "jsonl" });
  t.like(lines[1], { line: 2, kind: "invalid", errors: [{ code: "MALFORMED_LINE" }] });
  t.deepEqual(await parse('"sku","attr.a-b.c"\nA,1\n'), [{ line: 2, kind: "valid", item: { sku: "A", attributes: { "a-b.c": "1" } } }]);
});

test("JSON Lines: number or string prices, converted from the source text, never through a float", async (t) => {
  const lines = await jsonl(
    [
      '{"sku":"N1","price":12.30,"currency":"USD"}',
      '{"sku":"N2","price":"12.30","currency":"USD"}',
      '{"sku":"N3","price":1.0000000000000001,"currency":"USD"}',
      '{"sku":"N4","price":1e3,"currency":"USD"}',
      '{"sku":"N5","price":100000000000000000000000,"currency":"JPY"}',
      '{"sku":"N6","price":-0.5,"currency":"EUR"}',
      '{"sku":"N7","price":123456789012.345,"currency":"BHD"}',
      '{"sku":"N8","stock":12.0}',
      '{"sku":"N9","stock":1E2}',
      '{"sku":"N10","stock":"7"}',
      '{"sku":"N11","price":1,"currency":"USD","price":2.50}',
      '{"sku":"N12","pr\\u0069ce":3.10,"currency":"USD"}',
      '{"sku":"N13","title":"\\"price\\": 9","price" : 4.5 ,"currency":"USD"}',
    ].join("\n"),
  );
  t.deepEqual(codes(lines), [
    { line: 1, valid: "N1" },
    { line: 2, valid: "N2" },
    { line: 3, sku: "N3", errors: ["price:BAD_NUMBER"] },
    { line: 4, sku: "N4", errors: ["price:BAD_NUMBER"] },
    { line: 5, sku: "N5", errors: ["price:TOO_LARGE"] },
    { line: 6, sku: "N6", errors: ["price:NEGATIVE_PRICE"] },
    { line: 7, valid: "N7" },
    { line: 8, sku: "N8", errors: ["stock:BAD_NUMBER"] },
    { line: 9, sku: "N9", errors: ["stock:BAD_NUMBER"] },
    { line: 10, valid: "N10" },
    { line: 11, valid: "N11" },
    { line: 12, valid: "N12" },
    { line: 13, valid: "N13" },
  ]);
  const valid = Object.fromEntries(lines.flatMap((l) => (l.kind === "valid" ? [[l.item.sku, l.item.priceMinor ?? l.item.stock]] : [])));
  t.deepEqual(valid, { N1: 1230, N2: 1230, N7: 123456789012345, N10: 7, N11: 250, N12: 310, N13: 450 });
  t.deepEqual(lines[2]!.kind === "invalid" && lines[2]!.errors[0]!.message, 'price "1.0000000000000001" has 16 decimals; USD has 2');
});

test("JSON Lines: only the keys present; wrong types, unknown keys, non-objects and missing partners are item errors", async (t) => {
  const lines = await jsonl(
    [
      '{"sku":"K1","title":"Only a title"}',
      '{"sku":12,"title":null,"price":true,"currency":"USD","attributes":[],"stock":{}}',
      '{"sku":"K3","attributes":{"color":"red","size":1,"bad key":"x"},"colour":"red"}',
      '{"sku":"K4","price":"1"}',
      '{"sku":"K5","currency":"USD"}',
      '{"title":"no sku"}',
      '[{"sku":"K7"}]',
      '"K8"',
      "null",
      '{"sku":"K10","title":"\\ud800 lone"}',
      `{"sku":"K11","attributes":{${Array.from({ length: 51 }, (_, i) => `"a${i}":"v"`).join(",")}}}`,
    ].join("\n"),
  );
  t.deepEqual(lines[0], { line: 1, kind: "valid", item: { sku: "K1", title: "Only a title" } });
  t.deepEqual(lines.slice(1), [
    {
      line: 2,
      kind: "invalid",
      sku: "",
      errors: [
        { field: "sku", code: "MALFORMED_LINE", message: "sku must be a string, not a number" },
        { field: "title", code: "MALFORMED_LINE", message: "title must be a string, not null" },
        { field: "price", code: "MALFORMED_LINE", message: "price must be a number, a string or a Money object, not a boolean" },
        { field: "attributes", code: "MALFORMED_LINE", message: "attributes must be an object of strings, not an array" },
        { field: "stock", code: "MALFORMED_LINE", message: "stock must be a number or a string, not an object" },
      ],
    },
    {
      line: 3,
      kind: "invalid",
      sku: "K3",
      errors: [
        { field: "attributes.size", code: "MALFORMED_LINE", message: "attributes.size must be a string, not a number" },
        { field: "colour", code: "UNKNOWN_FIELD", message: 'unknown field "colour"' },
        {
          field: "attributes.bad key",
          code: "BAD_ATTRIBUTE",
          message: 'attribute "bad key": key must be 1 to 64 characters of [A-Za-z0-9_.-]',
        },
      ],
    },
    { line: 4, kind: "invalid", sku: "K4", errors: [{ field: "currency", code: "MISSING_CURRENCY", message: "a price needs a currency" }] },
    { line: 5, kind: "invalid", sku: "K5", errors: [{ field: "price", code: "MISSING_PRICE", message: "a currency needs a price" }] },
    { line: 6, kind: "invalid", sku: "", errors: [{ field: "sku", code: "MISSING_SKU", message: "sku is required" }] },
    { line: 7, kind: "invalid", sku: "", errors: [{ field: "", code: "MALFORMED_LINE", message: "the line is not a JSON object" }] },
    { line: 8, kind: "invalid", sku: "", errors: [{ field: "", code: "MALFORMED_LINE", message: "the line is not a JSON object" }] },
    { line: 9, kind: "invalid", sku: "", errors: [{ field: "", code: "MALFORMED_LINE", message: "the line is not a JSON object" }] },
    {
      line: 10,
      kind: "invalid",
      sku: "K10",
      errors: [{ field: "title", code: "INVALID_UTF8", message: "title holds an unpaired surrogate escape" }],
    },
    {
      line: 11,
      kind: "invalid",
      sku: "K11",
      errors: [{ field: "attributes", code: "BAD_ATTRIBUTE", message: "attributes must have at most 50 entries" }],
    },
  ]);
  const badKey = await jsonl('{"sku":"K","attributes":{"bad key":"x"}}');
  t.deepEqual(badKey, [
    {
      line: 1,
      kind: "invalid",
      sku: "K",
      errors: [
        {
          field: "attributes.bad key",
          code: "BAD_ATTRIBUTE",
          message: 'attribute "bad key": key must be 1 to 64 characters of [A-Za-z0-9_.-]',
        },
      ],
    },
  ]);
});

test("JSON Lines: price and compare_at_price as the API's Money objects, in minor units, naming the line's currency", async (t) => {
  const lines = await jsonl(
    [
      '{"sku":"M1","price":{"currencyCode":"EUR","minorUnits":"1290"},"compare_at_price":{"currencyCode":"EUR","minorUnits":1500}}',
      '{"sku":"M2","price":{"currency_code":"JPY","minor_units":"980"}}',
      '{"sku":"M3","price":{"currencyCode":"BHD","minorUnits":"5"},"currency":"BHD"}',
      '{"sku":"M4","price":{"currencyCode":"USD"}}',
      '{"sku":"M5","price":{"currencyCode":"USD","minorUnits":"100"},"currency":"EUR"}',
      '{"sku":"M6","price":{"currencyCode":"EUR","units":"19","nanos":990000000}}',
      '{"sku":"M7","price":{"minorUnits":"100"}}',
      '{"sku":"M8","price":{"currencyCode":"EUR","minorUnits":"12.5"}}',
      '{"sku":"M9","price":{"currencyCode":"EUR","minorUnits":"-100"}}',
      '{"sku":"M10","price":{"currencyCode":"XXQ","minorUnits":"100"}}',
      '{"sku":"M11","price":"1.00","currency":"EUR","compare_at_price":{"currencyCode":"USD","minorUnits":"200"}}',
      '{"sku":"M12","price":{"currencyCode":"EUR","minorUnits":"2000000000000000"}}',
    ].join("\n"),
  );
  t.deepEqual(codes(lines), [
    { line: 1, valid: "M1" },
    { line: 2, valid: "M2" },
    { line: 3, valid: "M3" },
    { line: 4, valid: "M4" },
    { line: 5, sku: "M5", errors: ["price:CURRENCY_MISMATCH"] },
    { line: 6, sku: "M6", errors: ["price.units:UNKNOWN_FIELD", "price.nanos:UNKNOWN_FIELD"] },
    { line: 7, sku: "M7", errors: ["price.currencyCode:MISSING_CURRENCY"] },
    { line: 8, sku: "M8", errors: ["price.minorUnits:BAD_NUMBER"] },
    { line: 9, sku: "M9", errors: ["price:NEGATIVE_PRICE"] },
    { line: 10, sku: "M10", errors: ["currency:UNKNOWN_CURRENCY"] },
    { line: 11, sku: "M11", errors: ["compare_at_price:CURRENCY_MISMATCH"] },
    { line: 12, sku: "M12", errors: ["price:TOO_LARGE"] },
  ]);
  const items = Object.fromEntries(lines.flatMap((l) => (l.kind === "valid" ? [[l.item.sku, l.item]] : [])));
  t.deepEqual(items["M1"], { sku: "M1", currency: "EUR", priceMinor: 1290, compareAtMinor: 1500 });
  t.deepEqual(items["M2"], { sku: "M2", currency: "JPY", priceMinor: 980 });
  t.deepEqual(items["M3"], { sku: "M3", currency: "BHD", priceMinor: 5 });
  // proto3 JSON leaves a zero out: no minorUnits is 0.
  t.deepEqual(items["M4"], { sku: "M4", currency: "USD", priceMinor: 0 });
  const mismatch = lines[4]!.kind === "invalid" ? lines[4]!.errors[0]!.message : "";
  t.is(mismatch, "price is in USD but the line's currency is EUR: a product has one currency");
});

test("JSON Lines: a file with no object at all is EMPTY_FILE", async (t) => {
  for (const input of ["", "\n", "  \r\n\n"]) {
    const error = await fileError(t, input, { format: "jsonl" });
    t.deepEqual([error.code, error.message], ["EMPTY_FILE", "the file is empty: it has no JSON lines"], JSON.stringify(input));
  }
});

test("maxBytes: FILE_TOO_LARGE as soon as a chunk crosses it, without reading further", async (t) => {
  const file = utf8(`sku\n${Array.from({ length: 30 }, (_, i) => `S${String(i).padStart(4, "0")}\n`).join("")}`); // 4 + 30 * 6 bytes
  let pulled = 0;
  async function* counted() {
    for await (const c of pieces(file, [10])) {
      pulled++;
      yield c;
    }
  }
  const error = await fileError(t, counted(), { maxBytes: 35 });
  t.is(pulled, 4, "the fourth chunk (bytes 31-40) crossed the limit; no fifth was read");
  t.deepEqual([error.code, error.message], ["FILE_TOO_LARGE", "the file is larger than 35 bytes"]);
  t.deepEqual(
    codes(error.lines),
    [2, 3, 4, 5].map((line) => ({ line, valid: `S${String(line - 2).padStart(4, "0")}` })),
  );
  t.is((await parse(file, { maxBytes: file.length })).length, 30, "a file of exactly maxBytes is fine");
  const bom = concat("\uFEFFsku\nA\n");
  t.is((await fileError(t, bom, { maxBytes: bom.length - 1 })).code, "FILE_TOO_LARGE", "the BOM counts");
});

test("maxItems: TOO_MANY_ITEMS at the first item past it; blank lines and the header do not count", async (t) => {
  const file = "sku\nA\n\nB\n,\nC\n";
  t.is((await parse(file, { maxItems: 4 })).length, 4);
  const error = await fileError(t, file, { maxItems: 3 });
  t.deepEqual([error.code, error.line, error.message], ["TOO_MANY_ITEMS", 6, "the file has more than 3 items"]);
  t.deepEqual(codes(error.lines), [
    { line: 2, valid: "A" },
    { line: 4, valid: "B" },
    { line: 5, sku: "", errors: [":MALFORMED_LINE"] },
  ]);
  const jsonError = await fileError(t, '{"sku":"A"}\n{"sku":"B"}\n', { format: "jsonl", maxItems: 1 });
  t.deepEqual([jsonError.code, jsonError.line, jsonError.lines.length], ["TOO_MANY_ITEMS", 2, 1]);
});

test("maxLineBytes: a longer record is TOO_LONG without being held, in any chunking, and the next line is read", async (t) => {
  const long = `L,"${"x\n".repeat(40)}"`; // 85 bytes over 41 physical lines
  const csv = utf8(`sku,title\nA,a\n${long}\nB,${"b".repeat(46)}\nC,c`);
  const expected = [
    { line: 2, valid: "A" },
    { line: 3, sku: "", errors: [":TOO_LONG"] },
    { line: 44, valid: "B" },
    { line: 45, valid: "C" },
  ];
  for (const sizes of [[csv.length], [1], [7], [50]]) {
    const lines = await collect(pieces(csv, sizes), { format: "csv", ...LIMITS, maxLineBytes: 48 });
    t.deepEqual(codes(lines), expected, `chunks of ${sizes[0]}`);
  }
  const json = utf8(`{"sku":"A"}\n{"sku":"L","title":"${"y".repeat(40)}"}\n{"sku":"B"}`);
  for (const sizes of [[json.length], [1], [9]]) {
    const lines = await collect(pieces(json, sizes), { format: "jsonl", ...LIMITS, maxLineBytes: 48 });
    t.deepEqual(codes(lines), [
      { line: 1, valid: "A" },
      { line: 2, sku: "", errors: [":TOO_LONG"] },
      { line: 3, valid: "B" },
    ]);
  }
  t.deepEqual((await fileError(t, `sku,${"t".repeat(60)}\n`, { maxLineBytes: 48 })).code, "MALFORMED_HEADER");
});

test.serial("memory stays bounded: a 24 MiB record is skipped as TOO_LONG, never held", async (t) => {
  const size = 64 * 1024;
  const body = 24 * 1024 * 1024;
  for (const format of ["csv", "jsonl"] as const) {
    const head = utf8(format === "csv" ? 'sku,title\nA,"' : '{"sku":"A","title":"');
    const tail = utf8(format === "csv" ? '"\nB,b\n' : '"}\n{"sku":"B"}\n');
    let peak = 0;
    /** source streams head, body and tail through one reused buffer, noting the memory held meanwhile. */
    async function* source() {
      const buf = new Uint8Array(size);
      yield head;
      for (let sent = 0; sent < body; sent += size) {
        peak = Math.max(peak, process.memoryUsage().arrayBuffers);
        yield buf.fill(0x78);
      }
      yield tail;
    }
    const before = process.memoryUsage().arrayBuffers;
    const lines = await collect(source(), { format, ...LIMITS, maxBytes: 2 * body, maxLineBytes: 1024 * 1024 });
    t.deepEqual(codes(lines), [
      { line: format === "csv" ? 2 : 1, sku: "", errors: [":TOO_LONG"] },
      { line: format === "csv" ? 3 : 2, valid: "B" },
    ]);
    t.true(peak - before < 8 * 1024 * 1024, `${format}: ${Math.round((peak - before) / 1024)} KiB held while streaming`);
    t.log(`${format}: ${Math.round((peak - before) / 1024)} KiB held while streaming 24 MiB`);
  }
});

test("options are checked", async (t) => {
  await t.throwsAsync(collect(pieces(utf8("sku\n"), [4]), { format: "xml" as "csv", ...LIMITS }), { instanceOf: RangeError });
  await t.throwsAsync(collect(pieces(utf8("sku\n"), [4]), { format: "csv", maxBytes: -1, maxItems: 1 }), { instanceOf: RangeError });
});

test("an unbalanced quote that swallows the next line: the record's errors name both lines, so no line goes unreported", async (t) => {
  // Line 3 opens a quote that line 4's quote closes: RFC 4180 reads lines 3–4 as one record, whose price is
  // then "2.00,EUR⏎C,Cup,3.00,EUR" and whose currency is missing.
  const file = 'sku,title,price,currency\nA,Mug,1.00,EUR\nB,Big mug,"2.00,EUR\nC,Cup,3.00,EUR"\nD,Plate,4.00,EUR\n';
  const lines = await parse(file);
  t.deepEqual(
    lines.map((l) => [l.line, l.kind]),
    [
      [2, "valid"],
      [3, "invalid"],
      [5, "valid"],
    ],
  );
  const broken = lines[1]!;
  t.true(broken.kind === "invalid" && broken.errors.length > 0);
  for (const e of broken.kind === "invalid" ? broken.errors : [])
    t.regex(e.message, /^lines 3–4 are one record \(a quoted field runs over the line breaks/);
  // A valid record may span lines (a description with line breaks): it stays valid, at its first line.
  const multi = await parse('sku,title,description,price,currency\nM,Mug,"one\ntwo",1.00,EUR\nN,Cup,,2.00,EUR\n');
  t.deepEqual(
    multi.map((l) => [l.line, l.kind]),
    [
      [2, "valid"],
      [4, "valid"],
    ],
  );
});

// ---- ItemBound: counting items without parsing ------------------------------------------

test("ItemBound never counts fewer items than the parser, and counts well-formed files exactly, wherever the bytes are cut", async (t) => {
  const bom = [0xef, 0xbb, 0xbf];
  const cases: { format: "csv" | "jsonl"; input: Uint8Array; exact: boolean }[] = [
    { format: "csv", input: utf8("sku,title\nA,a\nB,b\n"), exact: true },
    { format: "csv", input: utf8("sku,title\nA,a\nB,b"), exact: true },
    { format: "csv", input: utf8('sku,title\r\nA,"two\r\nlines"\r\nB,"say ""hi""\nthere"\r\n'), exact: true },
    { format: "csv", input: utf8('"sku","title"\n"A","x,\ny"\n"B",""\n'), exact: true },
    { format: "csv", input: concat(bom, '"sku",title\nA,"a\nb"\n'), exact: true },
    // A stray quote is text: it opens nothing, so the next line is a record of its own.
    { format: "csv", input: utf8('sku,title\nA,a"b\nB,"c\n'), exact: true },
    // Text after a closing quote, and a CR that is not a line end.
    { format: "csv", input: utf8('sku,title\nA,"a"x\nB,"b"\rc\nC,"c"\r\n'), exact: true },
    // An unclosed quote swallows the rest as one record.
    { format: "csv", input: utf8('sku,title\nA,"open\nB,b\nC,c\n'), exact: true },
    // Blank lines are skipped by the parser but counted by the bound.
    { format: "csv", input: utf8("sku,title\n\nA,a\n\n"), exact: false },
    { format: "csv", input: utf8("sku"), exact: true },
    { format: "jsonl", input: utf8('{"sku":"A"}\n{"sku":"B"}\n'), exact: true },
    { format: "jsonl", input: utf8('{"sku":"A"}\r\n{"sku":"B"}'), exact: true },
    { format: "jsonl", input: concat(bom, '{"sku":"A"}\n\n{"sku":"B"}\n'), exact: false },
  ];
  for (const { format, input, exact } of cases) {
    const parsed = (await collect(pieces(input, [input.length]), { format, ...LIMITS })).length;
    for (const size of [1, 2, 3, 5, input.length]) {
      const bound = new ItemBound(format);
      for await (const piece of pieces(input, [size])) bound.push(piece);
      const items = bound.items();
      const text = `${JSON.stringify(Buffer.from(input).toString("utf8"))} cut every ${size} bytes: ${items} vs ${parsed}`;
      if (exact) t.is(items, parsed, text);
      else t.true(items >= parsed, text);
    }
  }
});

test("ItemBound on random CSV bodies of quotes, commas, CRs and LFs is never below the parser's count", async (t) => {
  const alphabet = ['"', ",", "\n", "\r", "a", " "];
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  for (let round = 0; round < 500; round++) {
    let body = "";
    for (let n = Math.floor(random() * 40); n > 0; n--) body += alphabet[Math.floor(random() * alphabet.length)];
    const input = utf8(`sku,title\n${body}`);
    const parsed = (await collect(pieces(input, [input.length]), { format: "csv", ...LIMITS })).length;
    const bound = new ItemBound("csv");
    for await (const piece of pieces(input, [1 + (round % 7)])) bound.push(piece);
    if (bound.items() < parsed) t.fail(`${JSON.stringify(body)}: ${bound.items()} < ${parsed}`);
  }
  t.pass();
});
