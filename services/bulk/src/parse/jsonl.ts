/**
 * JSON Lines: one object per LF-terminated line (a CR before the LF is JSON
 * whitespace; blank lines are skipped but counted). price and stock keep
 * their source text, so 12.30 stays "12.30" and never goes through a float.
 * price and compare_at_price may also be Money objects as the API's JSON
 * writes them, {"currencyCode": "EUR", "minorUnits": "1290"} (or with
 * snake_case keys), so a price taken from the API's JSON goes in as it is
 * (the line's other keys are still the CSV columns, not a Product's).
 */
import { isUtf8 } from "node:buffer";
import { currencyDigits, isKnownCurrency } from "@stockroom/common";
import { Carry } from "./carry.ts";
import { buildItem, setOwn, tooLong, type RawFields } from "./fields.ts";
import { BulkFileError, SAVE_AS_UTF8, type Draft, type ItemError, type Scanner } from "./types.ts";

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);
/** A CSV header naming sku among other columns: a CSV file uploaded as JSON Lines. */
const CSV_HEADER = /^\s*"?sku"?\s*[,;\t]|[,;\t]\s*"?sku"?\s*([,;\t]|$)/i;

/** RawNumber is a JSON number as written in the file. */
class RawNumber {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/**
 * withNumberTexts swaps the numbers of price and stock for their source text,
 * found by matching `"price": <number>` in the line. It gives up (returns
 * false) unless the match is unique and equal to the parsed value, and the
 * caller then parses again with keepNumberText: a reviver makes JSON.parse
 * about five times slower, so it is kept for the rare ambiguous line.
 */
function withNumberTexts(text: string, value: Record<string, unknown>): boolean {
  for (const [key, pattern] of NUMBER_KEYS) {
    const v = value[key];
    if (typeof v !== "number") continue;
    pattern.lastIndex = 0;
    const m = pattern.exec(text);
    if (!m || pattern.exec(text) || !Object.is(Number(m[1]), v)) return false;
    value[key] = new RawNumber(m[1]!);
  }
  return true;
}

const NUMBER_KEYS = [
  ["price", /"price"\s*:\s*(-?[0-9][0-9.eE+-]*)/g],
  ["stock", /"stock"\s*:\s*(-?[0-9][0-9.eE+-]*)/g],
  ["compare_at_price", /"compare_at_price"\s*:\s*(-?[0-9][0-9.eE+-]*)/g],
  ["weight_grams", /"weight_grams"\s*:\s*(-?[0-9][0-9.eE+-]*)/g],
] as const;

/** keepNumberText is a JSON.parse reviver; context.source is the value's source text (Node 21+). */
function keepNumberText(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  return typeof value === "number" ? new RawNumber(context?.source ?? String(value)) : value;
}

const attrField = (key: string) => `attributes.${key}`;

export class JsonlScanner implements Scanner {
  line = 1;
  readonly #maxLineBytes: number;
  #buf: Buffer = EMPTY;
  #pos = 0;
  #ended = false;
  #done = false;
  #carry = new Carry();
  #overflow = false;
  #sawLine = false;

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  push(chunk: Buffer): void {
    this.#buf = chunk;
    this.#pos = 0;
  }

  end(): void {
    this.#ended = true;
  }

  next(): Draft | undefined {
    for (;;) {
      const buf = this.#buf;
      if (this.#pos < buf.length) {
        const lf = buf.indexOf(LF, this.#pos);
        if (lf < 0) {
          // The rest of the chunk starts a line that a later chunk ends.
          if (!this.#overflow) {
            this.#carry.append(buf, this.#pos, buf.length);
            if (this.#carry.length > this.#maxLineBytes) {
              this.#overflow = true;
              this.#carry.clear();
            }
          }
          this.#pos = buf.length;
          continue;
        }
        const draft = this.#close(lf);
        if (draft) return draft;
        continue;
      }
      this.#buf = EMPTY;
      this.#pos = 0;
      if (!this.#ended || this.#done) return undefined;
      this.#done = true;
      const draft = this.#carry.length > 0 || this.#overflow ? this.#close(-1) : undefined;
      if (draft) return draft;
      if (!this.#sawLine) throw new BulkFileError("EMPTY_FILE", this.line, "the file is empty: it has no JSON lines");
      return undefined;
    }
  }

  /** #close ends the line whose LF is at index lf of the chunk (-1: the end of the file). */
  #close(lf: number): Draft | undefined {
    const line = this.line;
    let draft: Draft | undefined;
    if (this.#overflow) draft = tooLong(line, this.#maxLineBytes);
    else {
      let bytes = this.#buf;
      let start = this.#pos;
      let end = lf < 0 ? bytes.length : lf;
      if (this.#carry.length > 0) {
        this.#carry.append(bytes, start, end);
        bytes = this.#carry.bytes;
        start = 0;
        end = this.#carry.length;
      }
      draft = end - start > this.#maxLineBytes ? tooLong(line, this.#maxLineBytes) : this.#line(bytes, start, end, line);
    }
    this.#carry.clear();
    this.#overflow = false;
    if (lf >= 0) {
      this.#pos = lf + 1;
      this.line++;
    }
    if (draft) this.#sawLine = true;
    return draft;
  }

  #line(bytes: Buffer, start: number, end: number, line: number): Draft | undefined {
    // A CR before the LF is JSON whitespace, and blank for isBlank.
    let first = start;
    while (first < end && isBlank(bytes[first]!)) first++;
    if (first === end) return undefined;
    const errors: ItemError[] = [];
    const fail = (code: string, message: string, sku = ""): Draft => {
      errors.push({ field: "", code, message });
      return { line, sku, skuKnown: false, item: undefined, errors };
    };
    if (!isUtf8(bytes.subarray(start, end))) {
      // Read the sku for the report if the damage lies elsewhere.
      const lossy = tryParse(bytes.toString("utf8", start, end));
      const sku = isObject(lossy) && typeof lossy["sku"] === "string" && !lossy["sku"].includes("\uFFFD") ? lossy["sku"] : "";
      return fail("INVALID_UTF8", `the line is not valid UTF-8: ${SAVE_AS_UTF8}`, sku);
    }
    const text = bytes.toString("utf8", start, end);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      if (!this.#sawLine && CSV_HEADER.test(text)) {
        throw new BulkFileError(
          "WRONG_FORMAT",
          line,
          "the first line is a CSV header, not a JSON object: upload the file as CSV (format csv)",
        );
      }
      return fail("MALFORMED_LINE", `the line is not valid JSON: ${(e as Error).message}`);
    }
    if (!isObject(value)) return fail("MALFORMED_LINE", "the line is not a JSON object");
    const object = withNumberTexts(text, value) ? value : (JSON.parse(text, keepNumberText) as Record<string, unknown>);
    const raw: RawFields = {};
    /** The currency of each Money object given (price, compare_at_price), checked against the line's once all is read. */
    const moneyCurrency: [field: "price" | "compare_at_price", currency: string][] = [];
    for (const key of Object.keys(object)) {
      const v = object[key];
      if ((key === "price" || key === "compare_at_price") && isObject(v)) {
        // A Money object (readMoney): its amount in major units here, its currency checked against the line's below.
        const money = readMoney(key, v, errors);
        if (money) {
          raw[key] = money.amount;
          moneyCurrency.push([key, money.currency]);
        }
        continue;
      }
      switch (key) {
        case "sku":
        case "title":
        case "description":
        case "currency":
        case "status":
        case "gtin":
        case "brand":
          if (typeof v !== "string") errors.push(wrongType(key, v, "a string"));
          else if (!v.isWellFormed())
            errors.push({ field: key, code: "INVALID_UTF8", message: `${key} holds an unpaired surrogate escape` });
          else raw[key] = v;
          break;
        case "price":
        case "stock":
          if (v instanceof RawNumber) raw[key] = v.text;
          else if (typeof v === "string") raw[key] = v;
          else errors.push(wrongType(key, v, key === "price" ? "a number, a string or a Money object" : "a number or a string"));
          break;
        case "compare_at_price":
        case "weight_grams":
          // null (or "") clears the field.
          if (v instanceof RawNumber) raw[key] = v.text;
          else if (typeof v === "string") raw[key] = v;
          else if (v === null) raw[key] = "";
          else errors.push(wrongType(key, v, "a number, a string or null"));
          break;
        case "attributes": {
          const attributes = readAttributes(v, errors);
          if (attributes) raw.attributes = attributes;
          break;
        }
        default:
          errors.push({ field: key, code: "UNKNOWN_FIELD", message: `unknown field ${JSON.stringify(key)}` });
      }
    }
    // A Money object names the line's currency, unless the line names it already: then they must agree.
    for (const [field, currency] of moneyCurrency) {
      if (raw.currency === undefined && !errors.some((e) => e.field === "currency")) raw.currency = currency;
      else if (raw.currency !== undefined && raw.currency !== currency) {
        errors.push({
          field,
          code: "CURRENCY_MISMATCH",
          message: `${field} is in ${currency} but the line's currency is ${raw.currency}: a product has one currency`,
        });
        delete raw[field];
      }
    }
    const item = buildItem(raw, errors, attrField);
    const skuKnown = raw.sku !== undefined && !errors.some((e) => e.field === "sku");
    return { line, sku: raw.sku ?? "", skuKnown, item, errors };
  }
}

/**
 * readMoney reads a Money object, {"currencyCode", "minorUnits"} as the API's
 * JSON writes it (snake_case too; minorUnits a string or a whole number, 0
 * when left out, as proto3 JSON leaves zeros out), as a decimal amount in
 * the currency's major units for buildItem, which validates it as any price.
 * Problems go to errors and give undefined.
 */
function readMoney(field: string, v: Record<string, unknown>, errors: ItemError[]): { currency: string; amount: string } | undefined {
  let currency: unknown;
  let minor: unknown = "0";
  let ok = true;
  for (const key of Object.keys(v)) {
    if (key === "currencyCode" || key === "currency_code") currency = v[key];
    else if (key === "minorUnits" || key === "minor_units") minor = v[key];
    else {
      errors.push({
        field: `${field}.${key}`,
        code: "UNKNOWN_FIELD",
        message: `unknown field ${JSON.stringify(key)} in ${field}: a Money object has currencyCode and minorUnits`,
      });
      ok = false;
    }
  }
  if (typeof currency !== "string" || currency === "") {
    errors.push(
      currency === undefined || currency === ""
        ? { field: `${field}.currencyCode`, code: "MISSING_CURRENCY", message: `${field} needs a currencyCode` }
        : wrongType(`${field}.currencyCode`, currency, "a string"),
    );
    ok = false;
  }
  const text =
    minor instanceof RawNumber
      ? minor.text
      : typeof minor === "string"
        ? minor
        : typeof minor === "number" && Number.isSafeInteger(minor)
          ? String(minor)
          : undefined;
  const m = text === undefined ? null : /^(-?)(\d+)$/.exec(text);
  if (!m) {
    errors.push(
      text === undefined
        ? wrongType(`${field}.minorUnits`, minor, "a whole number or a string of digits")
        : {
            field: `${field}.minorUnits`,
            code: "BAD_NUMBER",
            message: `${field}.minorUnits ${JSON.stringify(text)} is not a whole number`,
          },
    );
    ok = false;
  }
  if (!ok) return undefined;
  const code = currency as string;
  const [, sign, digits] = m!;
  // An unknown currency has no digits: buildItem reports the currency, and the amount is never converted.
  if (!isKnownCurrency(code)) return { currency: code, amount: `${sign}${digits}` };
  const places = currencyDigits(code);
  const padded = digits!.padStart(places + 1, "0");
  const amount = places === 0 ? padded : `${padded.slice(0, -places)}.${padded.slice(-places)}`;
  return { currency: code, amount: `${sign}${amount}` };
}

/** readAttributes reports what in v is not an object of strings, and returns the entries that are. */
function readAttributes(v: unknown, errors: ItemError[]): Record<string, string> | undefined {
  if (!isObject(v)) {
    errors.push(wrongType("attributes", v, "an object of strings"));
    return undefined;
  }
  const attributes: Record<string, string> = {};
  for (const key of Object.keys(v)) {
    const value = v[key];
    const field = attrField(key);
    if (typeof value !== "string") errors.push(wrongType(field, value, "a string"));
    else if (!value.isWellFormed() || !key.isWellFormed()) {
      errors.push({ field, code: "INVALID_UTF8", message: `${field} holds an unpaired surrogate escape` });
    } else setOwn(attributes, key, value);
  }
  return attributes;
}

function wrongType(field: string, v: unknown, expected: string): ItemError {
  const got =
    v === null
      ? "null"
      : Array.isArray(v)
        ? "an array"
        : v instanceof RawNumber
          ? "a number"
          : typeof v === "object"
            ? "an object"
            : `a ${typeof v}`;
  return { field, code: "MALFORMED_LINE", message: `${field} must be ${expected}, not ${got}` };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof RawNumber);
}

function isBlank(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === CR;
}

function tryParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
