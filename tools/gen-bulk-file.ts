/**
 * `npm run gen:bulk -- --rows 500000 --format csv --out products.csv`: writes
 * a realistic bulk product file for load and parser tests. The file streams
 * out in chunks of about 64 KiB, and a share of its lines is broken on
 * purpose; generateBulkFile reports each broken line's 1-based physical line
 * number and the error code the server should give it, so a test can hold a
 * job's report to them. The same seed always gives the same bytes.
 */
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { parseArgs } from "node:util";
import { LIMITS } from "@stockroom/catalog";
import { currencyDigits } from "@stockroom/common";

/** ERROR_CODES are the item error codes the generator provokes (stockroom.bulk.v1 BulkItemError.code). */
export const ERROR_CODES = [
  "MISSING_SKU",
  "BAD_NUMBER",
  "NEGATIVE_PRICE",
  "NEGATIVE_STOCK",
  "UNKNOWN_CURRENCY",
  "TOO_LONG",
  "DUPLICATE_SKU",
  "MALFORMED_LINE",
  "INVALID_UTF8",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

const FIELDS = ["sku", "title", "description", "price", "currency", "stock", "status"] as const;
type Field = (typeof FIELDS)[number];
export const DEFAULT_COLUMNS: readonly string[] = [...FIELDS, "attr.color", "attr.size"];
export const MAX_ROWS = 100_000_000;

export interface GenOptions {
  rows: number;
  format: "csv" | "jsonl";
  seed: number;
  /** The columns the file names; sku is always added, and price and currency always go together. */
  columns?: string[];
  /** The share of rows made invalid, 0 to 1 (default 0). */
  invalidRate?: number;
  /** Start a CSV file with a UTF-8 byte order mark. */
  bom?: boolean;
  /** End lines with CRLF; newlines inside CSV fields stay LF. */
  crlf?: boolean;
  skuPrefix?: string;
}

export interface GeneratedFile {
  /** columns are the normalized columns, in file order. */
  columns: readonly string[];
  /** chunks are the file's bytes, made lazily; they can be iterated once. */
  chunks: Iterable<Uint8Array>;
  expected: {
    /** validLines counts the data lines that should be accepted, once the chunks are consumed. */
    validLines: () => number;
    /** invalid maps each broken line's 1-based physical line number to its expected code; it fills as chunks are made. */
    invalid: Map<number, ErrorCode>;
  };
}

/** OptionError is an option that cannot make a file; the CLI exits 2 on it. */
export class OptionError extends Error {
  override name = "OptionError";
}

const ATTRIBUTE_KEY = /^[A-Za-z0-9_.-]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this pattern finds
const CONTROL = /[\u0000-\u001f\u007f\uffff]/;
/** RAW marks where a raw 0xFF byte goes; no generated text contains U+FFFF otherwise. */
const RAW = "\uffff";
const CHUNK_CHARS = 64 * 1024;
const CSV_SPECIAL = /[",\r\n]/;
const DECIMAL = /^-?\d+(\.\d+)?$/;
const INTEGER = /^-?\d+$/;

// ---- data -------------------------------------------------------------------

const ADJECTIVES = [
  "Classic",
  "Vintage",
  "Organic",
  "Handmade",
  "Deluxe",
  "Compact",
  "Crème",
  "Éco",
  "Smart",
  "Ultra-light",
  "Café",
  "Nordic",
  "Kyoto",
  "Rustic",
  "Waterproof",
  "Señor",
  "Große",
];
const NOUNS = [
  "teapot",
  "backpack",
  "skillet",
  "notebook",
  "headphones",
  "sneakers",
  "desk lamp",
  "mug",
  "rain jacket",
  "scarf",
  "bento box",
  "umbrella",
  "抹茶 set",
  "日本 chef knife",
  "water bottle",
  "crêpe pan",
];
const EXTRAS = [
  "2-pack",
  "size M",
  "with lid, 1.5 L",
  '12" display',
  '"Limited" edition',
  "🍵",
  "🎒 for school",
  "☕️ lovers",
  "👩‍🍳 chef's pick",
  "naïve design",
  "Zürich edition",
  "日本製",
  "blue, green, or red",
  "100% cotton",
  "5 ½ in.",
  "déjà vu",
];
const SENTENCES = [
  "Ships in 2–3 days.",
  "Dishwasher safe, but hand-washing is recommended.",
  'Our "everyday" favourite.',
  "Fait à la main en France.",
  "日本で作られました。",
  "Perfect for tea ceremonies 🍵.",
  "Includes a 1-year warranty; see terms.",
  'Fits 13" and 14" laptops.',
  "Size chart: S, M, L, XL.",
  "Crème brûlée not included 😄.",
  "Ça va? Très bien, merci!",
  'Say "hello," then "goodbye".',
];
const ATTRIBUTE_VALUES: Record<string, readonly string[]> = {
  color: ["red", "navy blue", "crème", "matte black", "白 (white)", "forest green", "rosé", "sky blue, light"],
  size: ["XS", "S", "M", "L", "XL", "42", '10" x 12"', "one size"],
  material: ["cotton", "stainless steel", "oak, oiled", "bamboo", "wool", "陶器 (ceramic)"],
};
const GENERIC_VALUES = ["alpha", "beta", "δέλτα", "ω", "東京", "option, B", '"quoted"'];
const STATUSES = ["active", "active", "active", "active", "active", "active", "active", "draft", "draft", "archived"];
/** CURRENCIES are weighted EUR 1/3, USD 1/3, JPY 1/6, BHD 1/6; digits come from the server's money rules. */
const CURRENCIES = ["EUR", "EUR", "USD", "USD", "JPY", "BHD"].map((code) => ({
  code,
  digits: currencyDigits(code),
  maxMajor: code === "JPY" ? 300_000 : 2_000,
}));

// ---- randomness ---------------------------------------------------------------

/** createRandom is sfc32 seeded through splitmix32: small, fast, and the same sequence everywhere. */
function createRandom(seed: number) {
  let s = seed >>> 0;
  const split = () => {
    s = (s + 0x9e3779b9) | 0;
    let z = Math.imul(s ^ (s >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split(),
    b = split(),
    c = split(),
    d = split();
  const float = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / 4294967296;
  };
  for (let i = 0; i < 12; i++) float();
  return {
    float,
    int: (min: number, max: number) => min + Math.floor(float() * (max - min + 1)),
    chance: (p: number) => float() < p,
    pick: <T>(items: readonly T[]): T => items[Math.floor(float() * items.length)]!,
  };
}
type Random = ReturnType<typeof createRandom>;

// ---- options ------------------------------------------------------------------

/** normalizeColumns checks column names, puts sku first and keeps price and currency together. */
export function normalizeColumns(columns: readonly string[]): string[] {
  const seen = new Set<string>();
  for (const c of columns) {
    if (seen.has(c)) throw new OptionError(`column "${c}" is named twice`);
    seen.add(c);
    if (c.startsWith("attr.")) {
      const key = c.slice("attr.".length);
      if (!ATTRIBUTE_KEY.test(key) || key.length > LIMITS.attributeKey) {
        throw new OptionError(`column "${c}": an attribute key is 1 to ${LIMITS.attributeKey} characters of [A-Za-z0-9_.-]`);
      }
    } else if (!(FIELDS as readonly string[]).includes(c)) {
      throw new OptionError(`unknown column "${c}"; columns are ${FIELDS.join(", ")} and attr.<key>`);
    }
  }
  const out = columns.filter((c) => c !== "sku" && c !== "currency");
  out.unshift("sku");
  if (seen.has("currency") && !seen.has("price")) out.splice(out.indexOf("sku") + 1, 0, "price");
  if (seen.has("price") || seen.has("currency")) out.splice(out.indexOf("price") + 1, 0, "currency");
  if (out.filter((c) => c.startsWith("attr.")).length > LIMITS.attributes) {
    throw new OptionError(`at most ${LIMITS.attributes} attribute columns`);
  }
  return out;
}

function checkOptions(o: GenOptions): void {
  if (!Number.isSafeInteger(o.rows) || o.rows < 0 || o.rows > MAX_ROWS)
    throw new OptionError(`rows must be a whole number from 0 to ${MAX_ROWS}, got ${o.rows}`);
  if (o.format !== "csv" && o.format !== "jsonl") throw new OptionError(`format must be csv or jsonl, got ${String(o.format)}`);
  if (!Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff)
    throw new OptionError(`seed must be a whole number from 0 to 4294967295, got ${o.seed}`);
  const rate = o.invalidRate ?? 0;
  if (!(rate >= 0 && rate <= 1)) throw new OptionError(`invalid rate must be from 0 to 1, got ${rate}`);
  if (o.bom && o.format !== "csv") throw new OptionError("a byte order mark is for CSV files only");
  const prefix = o.skuPrefix ?? "SKU-";
  if (CONTROL.test(prefix) || prefix.trimStart() !== prefix || [...prefix].length > LIMITS.sku - 9) {
    throw new OptionError(`sku prefix must be at most ${LIMITS.sku - 9} characters, without control characters or leading spaces`);
  }
}

// ---- rows -----------------------------------------------------------------------

interface Row {
  sku: string;
  title: string;
  description: string;
  price: string;
  currency: string;
  stock: string;
  status: string;
  attributes: string[];
  /** JSON Lines writes the price as a number rather than a string. */
  priceAsNumber: boolean;
  /** JSON Lines leaves the sku key out. */
  omitSku: boolean;
  /** CSV quotes every field, as some exporters do. */
  quoteAll: boolean;
  malformed: boolean;
  raw: boolean;
}

function formatMinor(minor: number, digits: number): string {
  if (digits === 0) return String(minor);
  const s = String(minor).padStart(digits + 1, "0");
  return `${s.slice(0, -digits)}.${s.slice(-digits)}`;
}

/** titleOfLength makes a title of exactly n code points, mixing 1- to 4-byte characters. */
function titleOfLength(rng: Random, n: number): string {
  const cps: string[] = [];
  while (cps.length < n) cps.push(...`${rng.pick(ADJECTIVES)} ${rng.pick(NOUNS)} ${rng.pick(EXTRAS)} `);
  cps.length = n;
  if (cps[n - 1] === " ") cps[n - 1] = "x";
  return cps.join("");
}

/**
 * generateBulkFile makes a bulk file lazily: each chunk holds about 64 KiB,
 * so memory stays bounded whatever the row count. Each invalid line has
 * exactly one problem, chosen evenly among the codes its columns allow.
 */
export function generateBulkFile(options: GenOptions): GeneratedFile {
  checkOptions(options);
  const columns = normalizeColumns(options.columns ?? DEFAULT_COLUMNS);
  const { rows, format, bom = false, crlf = false, invalidRate = 0, skuPrefix = "SKU-" } = options;
  const has = new Set(columns);
  const attrKeys = columns.filter((c) => c.startsWith("attr.")).map((c) => c.slice("attr.".length));
  /** attrIndex maps a column's position to its attribute's index in Row.attributes, or -1. */
  const attrIndex = columns.map((c) => (c.startsWith("attr.") ? attrKeys.indexOf(c.slice("attr.".length)) : -1));
  const codes = ERROR_CODES.filter((code) => {
    switch (code) {
      case "BAD_NUMBER":
        return has.has("price") || has.has("stock");
      case "NEGATIVE_PRICE":
        return has.has("price");
      case "NEGATIVE_STOCK":
        return has.has("stock");
      case "UNKNOWN_CURRENCY":
        return has.has("currency");
      case "TOO_LONG":
        return has.has("title");
      default:
        return true;
    }
  });
  const withoutDuplicate = codes.filter((c) => c !== "DUPLICATE_SKU");
  const skuWidth = Math.max(6, String(rows).length);
  const eol = crlf ? "\r\n" : "\n";
  const rng = createRandom(options.seed);
  const invalid = new Map<number, ErrorCode>();
  let state: "new" | "running" | "done" = "new";

  const makeRow = (n: number): Row => {
    const row: Row = {
      sku: skuPrefix + String(n).padStart(skuWidth, "0"),
      title: "",
      description: "",
      price: "",
      currency: "",
      stock: "",
      status: "",
      attributes: [],
      priceAsNumber: false,
      omitSku: false,
      quoteAll: rng.chance(0.05),
      malformed: false,
      raw: false,
    };
    if (has.has("title")) {
      row.title = rng.chance(0.002)
        ? titleOfLength(rng, LIMITS.title)
        : `${rng.pick(ADJECTIVES)} ${rng.pick(NOUNS)}${rng.chance(0.6) ? `, ${rng.pick(EXTRAS)}` : ""}`;
    }
    if (has.has("description")) {
      const parts: string[] = [];
      for (let i = rng.int(1, 4); i > 0; i--) parts.push(rng.pick(SENTENCES));
      row.description = parts.join(rng.chance(0.03) ? "\n" : " ");
    }
    if (has.has("price")) {
      const cur = rng.pick(CURRENCIES);
      const maxMinor = cur.maxMajor * 10 ** cur.digits;
      const minor = Math.max(1, Math.round(Math.exp(rng.float() * Math.log(maxMinor))));
      row.price = formatMinor(minor, cur.digits);
      row.currency = cur.code;
      row.priceAsNumber = rng.chance(0.3);
    }
    if (has.has("stock")) row.stock = String(rng.chance(0.05) ? 0 : rng.int(1, 5000));
    if (has.has("status")) row.status = rng.pick(STATUSES);
    for (const key of attrKeys) {
      const values = ATTRIBUTE_VALUES[key];
      row.attributes.push(values ? rng.pick(values) : `${rng.pick(GENERIC_VALUES)} ${rng.int(1, 99)}`);
    }
    return row;
  };

  const breakRow = (row: Row, code: ErrorCode, recent: readonly string[]): void => {
    switch (code) {
      case "MISSING_SKU":
        row.sku = "";
        row.omitSku = rng.chance(0.5);
        break;
      case "BAD_NUMBER":
        if (has.has("price") && (!has.has("stock") || rng.chance(0.5))) row.price = rng.pick(["12,5", "abc", "12.3.4"]);
        else row.stock = rng.pick(["12,5", "abc", "ten"]);
        break;
      case "NEGATIVE_PRICE":
        row.price = `-${row.price}`;
        break;
      case "NEGATIVE_STOCK":
        row.stock = `-${rng.int(1, 500)}`;
        break;
      case "UNKNOWN_CURRENCY":
        // A whole amount, so no currency's digit rule can add a second problem.
        row.currency = "XYZ";
        row.price = row.price.split(".")[0]!;
        break;
      case "TOO_LONG":
        row.title = titleOfLength(rng, LIMITS.title + 100);
        break;
      case "DUPLICATE_SKU":
        row.sku = rng.pick(recent);
        break;
      case "MALFORMED_LINE":
        row.malformed = true;
        break;
      case "INVALID_UTF8":
        row.raw = true;
        if (has.has("title")) row.title = withRaw(row.title);
        else if (has.has("description")) row.description = withRaw(row.description);
        else if (row.attributes.length > 0) row.attributes[0] = withRaw(row.attributes[0]!);
        else row.sku = withRaw(row.sku);
        break;
    }
  };

  const csvField = (value: string, quote: boolean) => (quote || CSV_SPECIAL.test(value) ? `"${value.replaceAll('"', '""')}"` : value);
  const csvRecord = (row: Row): string => {
    const fields = columns.map((c, i) => {
      const a = attrIndex[i]!;
      const value = a >= 0 ? row.attributes[a]! : row[c as Field];
      // An empty single field is written "" so the line is not blank.
      return csvField(value, row.quoteAll || (columns.length === 1 && value === ""));
    });
    if (row.malformed) {
      if (fields.length > 1 && rng.chance(0.5)) fields.pop();
      else fields.push(csvField(rng.pick(["extra", "1", "oops, two"]), false));
    }
    return fields.join(",");
  };
  const jsonRecord = (row: Row): string => {
    const o: Record<string, unknown> = {};
    const attributes: Record<string, string> = {};
    for (const [i, key] of attrKeys.entries()) attributes[key] = row.attributes[i]!;
    for (const c of columns) {
      if (c === "sku") {
        if (!row.omitSku) o["sku"] = row.sku;
      } else if (c === "price") o["price"] = row.priceAsNumber && DECIMAL.test(row.price) ? Number(row.price) : row.price;
      else if (c === "stock") o["stock"] = INTEGER.test(row.stock) ? Number(row.stock) : row.stock;
      else if (c.startsWith("attr.")) o["attributes"] = attributes;
      else o[c] = row[c as Field];
    }
    const json = JSON.stringify(o);
    if (!row.malformed) return json;
    switch (rng.int(0, 2)) {
      case 0:
        return json.slice(0, -1);
      case 1:
        return `${json.slice(0, -1)},}`;
      default:
        return json.replace('"', "");
    }
  };

  function* produce(): Generator<Uint8Array> {
    let text = bom ? "\uFEFF" : "";
    let raw = false;
    let line = 1;
    if (format === "csv") {
      text += columns.join(",") + eol;
      line = 2;
    }
    // The latest valid skus, for DUPLICATE_SKU: a ring, so memory stays bounded.
    const recent: string[] = [];
    for (let n = 1; n <= rows; n++) {
      const row = makeRow(n);
      if (rng.float() < invalidRate) {
        const code = rng.pick(recent.length > 0 ? codes : withoutDuplicate);
        breakRow(row, code, recent);
        invalid.set(line, code);
      } else if (recent.length < 256) recent.push(row.sku);
      else recent[n % 256] = row.sku;
      const record = format === "csv" ? csvRecord(row) : jsonRecord(row);
      text += record + eol;
      line++;
      // Newlines inside quoted CSV fields start physical lines too.
      for (let i = record.indexOf("\n"); i >= 0; i = record.indexOf("\n", i + 1)) line++;
      raw ||= row.raw;
      if (text.length >= CHUNK_CHARS) {
        yield encode(text, raw);
        text = "";
        raw = false;
      }
    }
    if (text !== "") yield encode(text, raw);
    state = "done";
  }

  return {
    columns,
    chunks: {
      [Symbol.iterator]() {
        if (state !== "new") throw new Error("the chunks of a generated file can be iterated only once");
        state = "running";
        return produce();
      },
    },
    expected: {
      validLines: () => {
        if (state !== "done") throw new Error("validLines is known once all chunks are consumed");
        return rows - invalid.size;
      },
      invalid,
    },
  };
}

/** withRaw puts a raw byte in place of the middle character, so the length stays within its limit. */
function withRaw(value: string): string {
  const cps = Array.from(value);
  cps[Math.floor(cps.length / 2)] = RAW;
  return cps.join("");
}

/** encode turns text into UTF-8, with a raw 0xFF byte for each RAW mark. */
function encode(text: string, raw: boolean): Uint8Array {
  if (!raw) return Buffer.from(text, "utf8");
  const parts: Buffer[] = [];
  text.split(RAW).forEach((part, i) => {
    if (i > 0) parts.push(Buffer.of(0xff));
    parts.push(Buffer.from(part, "utf8"));
  });
  return Buffer.concat(parts);
}

// ---- command line -----------------------------------------------------------------

export const USAGE = `usage: npm run gen:bulk -- --rows N --format csv|jsonl --out FILE [options]

  --rows N            data rows, 0 to ${MAX_ROWS}
  --format csv|jsonl
  --out FILE          the file to write, or - for standard output
  --seed N            0 to 4294967295 (default 42); a seed always gives the same bytes
  --columns LIST      comma-separated from sku,title,description,price,currency,stock,
                      status,attr.<key> (default ${DEFAULT_COLUMNS.join(",")});
                      sku is always included, price and currency go together
  --invalid-rate R    share of rows broken on purpose, 0 to 1 (default 0)
  --bom               start a CSV file with a UTF-8 byte order mark
  --crlf              end lines with CRLF
  --sku-prefix P      (default SKU-)`;

/** parseCli turns command-line arguments into options; it throws OptionError on bad usage. */
export function parseCli(args: string[]): { help: true } | { help: false; out: string; options: GenOptions } {
  // biome-ignore lint/suspicious/noImplicitAnyLet: typed by the parseArgs assignment below (its options decide the type)
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        rows: { type: "string" },
        format: { type: "string" },
        out: { type: "string" },
        seed: { type: "string" },
        columns: { type: "string" },
        "invalid-rate": { type: "string" },
        bom: { type: "boolean" },
        crlf: { type: "boolean" },
        "sku-prefix": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    throw new OptionError((error as Error).message);
  }
  if (values.help) return { help: true };
  const required = (flag: string, value: string | undefined): string => {
    if (value === undefined || value === "") throw new OptionError(`${flag} is required`);
    return value;
  };
  const whole = (flag: string, value: string): number => {
    if (!/^\d+(_\d+)*$/.test(value)) throw new OptionError(`${flag} must be a whole number, got "${value}"`);
    return Number(value.replaceAll("_", ""));
  };
  const rows = whole("--rows", required("--rows", values.rows));
  const format = required("--format", values.format);
  if (format !== "csv" && format !== "jsonl") throw new OptionError(`--format must be csv or jsonl, got "${format}"`);
  const out = required("--out", values.out);
  const rate = values["invalid-rate"] ?? "0";
  if (!/^(\d+\.?\d*|\.\d+)$/.test(rate)) throw new OptionError(`--invalid-rate must be a number from 0 to 1, got "${rate}"`);
  const columns = values.columns?.split(",").map((c) => c.trim());
  if (columns?.some((c) => c === "")) throw new OptionError("--columns has an empty name");
  const options: GenOptions = {
    rows,
    format,
    seed: whole("--seed", values.seed ?? "42"),
    invalidRate: Number(rate),
    bom: values.bom ?? false,
    crlf: values.crlf ?? false,
    skuPrefix: values["sku-prefix"] ?? "SKU-",
  };
  if (columns) options.columns = columns;
  return { help: false, out, options };
}

async function main(args: string[]): Promise<void> {
  let file: GeneratedFile;
  let out: string;
  try {
    const cli = parseCli(args);
    if (cli.help) {
      console.log(USAGE);
      return;
    }
    out = cli.out;
    file = generateBulkFile(cli.options);
  } catch (error) {
    if (!(error instanceof OptionError)) throw error;
    console.error(`gen:bulk: ${error.message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const started = performance.now();
  let bytes = 0;
  const counted = function* () {
    for (const chunk of file.chunks) {
      bytes += chunk.byteLength;
      yield chunk;
    }
  };
  const toStdout = out === "-";
  try {
    // pipeline waits for the writer to drain before pulling the next chunk.
    await pipeline(counted(), toStdout ? process.stdout : createWriteStream(out), { end: !toStdout });
  } catch (error) {
    console.error(`gen:bulk: could not write ${out}: ${(error as Error).message}`);
    process.exitCode = 1;
    return;
  }
  const seconds = (performance.now() - started) / 1000;
  const byCode = new Map<string, number>();
  for (const code of file.expected.invalid.values()) byCode.set(code, (byCode.get(code) ?? 0) + 1);
  const invalid = [...byCode]
    .sort()
    .map(([code, n]) => `${code} ${n}`)
    .join(", ");
  const rows = file.expected.validLines() + file.expected.invalid.size;
  const report =
    `${rows} rows (${file.expected.validLines()} valid, ${file.expected.invalid.size} invalid${invalid ? `: ${invalid}` : ""}), ` +
    `${bytes} bytes (${(bytes / 2 ** 20).toFixed(1)} MiB) in ${seconds.toFixed(2)} s → ${out}`;
  if (toStdout) console.error(report);
  else console.log(report);
}

if (import.meta.main) await main(process.argv.slice(2));
