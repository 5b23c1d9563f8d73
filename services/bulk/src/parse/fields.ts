/**
 * Field conversion and validation shared by CSV and JSON Lines: text values
 * become a BulkItem, and every problem becomes an ItemError. The product
 * rules are the catalog's (validateSku, validateFields); this file only adds
 * the file format's own rules (number syntax, currency digits, status names).
 */
import { type FieldViolation, currencyDigits, isKnownCurrency } from "@stockroom/common";
import { LIMITS, validateFields, validateSku, type ProductFields, type ProductStatus } from "@stockroom/catalog";
import type { BulkItem, Draft, ItemError } from "./types.ts";

/** RawFields are a line's values as text; undefined means the line does not name the field (or it was unreadable). */
export interface RawFields {
  sku?: string;
  title?: string;
  description?: string;
  price?: string;
  currency?: string;
  stock?: string;
  status?: string;
  attributes?: Record<string, string>;
}

const STATUSES: ReadonlySet<string> = new Set<ProductStatus>(["active", "draft", "archived"]);
/** DECIMAL: digits with an optional fraction; no exponent, no separators, no "+", no leading or trailing dot. */
const DECIMAL = /^(-?)(\d+)(?:\.(\d+))?$/;
const INTEGER = /^(-?)(\d+)$/;

/**
 * buildItem converts raw values into an item and appends every problem to
 * errors (which may already hold the format's own errors; a field with an
 * error there is not reported again as missing). attrField names an
 * attribute key's column, e.g. "attr.color".
 */
export function buildItem(raw: RawFields, errors: ItemError[], attrField: (key: string) => string): BulkItem {
  const broken = (field: string) => errors.some((e) => e.field === field);
  const item: BulkItem = { sku: raw.sku ?? "" };
  if (raw.sku === undefined) {
    if (!broken("sku")) errors.push({ field: "sku", code: "MISSING_SKU", message: "sku is required" });
  } else {
    const violations: FieldViolation[] = [];
    validateSku("sku", raw.sku, violations);
    for (const v of violations) {
      const code = raw.sku === "" ? "MISSING_SKU" : [...raw.sku].length > LIMITS.sku ? "TOO_LONG" : "BAD_SKU";
      errors.push({ field: "sku", code, message: `sku ${v.description}` });
    }
  }
  if (raw.title !== undefined) item.title = raw.title;
  if (raw.description !== undefined) item.description = raw.description;
  if (raw.currency !== undefined) item.currency = raw.currency;
  else if (raw.price !== undefined && !broken("currency")) {
    errors.push({ field: "currency", code: "MISSING_CURRENCY", message: "a price needs a currency" });
  }
  if (raw.price !== undefined) convertPrice(raw.price, raw.currency, item, errors);
  else if (raw.currency !== undefined && !broken("price")) {
    errors.push({ field: "price", code: "MISSING_PRICE", message: "a currency needs a price" });
  }
  if (raw.stock !== undefined) convertStock(raw.stock, item, errors);
  if (raw.status !== undefined) {
    const status = raw.status.toLowerCase();
    if (STATUSES.has(status)) item.status = status as ProductStatus;
    else errors.push({ field: "status", code: "BAD_STATUS", message: `status ${quote(raw.status)} is not one of active, draft, archived` });
  }
  if (raw.attributes !== undefined) item.attributes = raw.attributes;
  catalogRules(item, errors, attrField);
  return item;
}

/** convertPrice turns a decimal in major units into integer minor units, from the text (no float math). */
function convertPrice(text: string, currency: string | undefined, item: BulkItem, errors: ItemError[]): void {
  const m = DECIMAL.exec(text);
  if (!m) {
    errors.push({ field: "price", code: "BAD_NUMBER", message: `price ${quote(text)} is not a decimal number such as 12.34` });
    return;
  }
  const [, sign, whole, fraction = ""] = m;
  if (sign) errors.push({ field: "price", code: "NEGATIVE_PRICE", message: "price must not be negative" });
  // Without a known currency the digits are unknown; the currency's own error says why.
  if (currency === undefined || !isKnownCurrency(currency)) return;
  const digits = currencyDigits(currency);
  if (fraction.length > digits) {
    errors.push({
      field: "price",
      code: "BAD_NUMBER",
      message: `price ${quote(text)} has ${fraction.length} decimals; ${currency} has ${digits}`,
    });
    return;
  }
  // At most 10^15 minor units are allowed; a longer digit string still compares as too large.
  if (!sign) item.priceMinor = Number(whole! + fraction.padEnd(digits, "0"));
}

function convertStock(text: string, item: BulkItem, errors: ItemError[]): void {
  const m = INTEGER.exec(text);
  if (!m) {
    errors.push({ field: "stock", code: "BAD_NUMBER", message: `stock ${quote(text)} is not a whole number` });
  } else if (m[1]) {
    errors.push({ field: "stock", code: "NEGATIVE_STOCK", message: "stock must not be negative" });
  } else {
    const stock = Number(m[2]);
    if (stock > LIMITS.stock) errors.push({ field: "stock", code: "TOO_LARGE", message: `stock must be at most ${LIMITS.stock}` });
    else item.stock = stock;
  }
}

/** catalogRules applies validateFields to the item and names each violation by column and code. */
function catalogRules(item: BulkItem, errors: ItemError[], attrField: (key: string) => string): void {
  const violations: FieldViolation[] = [];
  validateFields("p", item as Partial<ProductFields>, violations);
  for (const { field: path, description } of violations) {
    const f = path.slice("p.".length);
    if (f === "title") {
      const blank = item.title!.trim() === "";
      errors.push({ field: "title", code: blank ? "MISSING_TITLE" : "TOO_LONG", message: `title ${description}` });
    } else if (f === "description") {
      errors.push({ field: "description", code: "TOO_LONG", message: `description ${description}` });
    } else if (f === "price.currency_code") {
      errors.push({ field: "currency", code: "UNKNOWN_CURRENCY", message: `currency ${description}` });
    } else if (f === "price.minor_units") {
      const negative = item.priceMinor! < 0;
      errors.push(
        negative
          ? { field: "price", code: "NEGATIVE_PRICE", message: `price ${description}` }
          : { field: "price", code: "TOO_LARGE", message: `price ${description} minor units` },
      );
    } else if (f === "stock") {
      errors.push({ field: "stock", code: "NEGATIVE_STOCK", message: `stock ${description}` });
    } else if (f === "attributes") {
      errors.push({ field: "attributes", code: "BAD_ATTRIBUTE", message: `attributes ${description}` });
    } else {
      const key = f.slice("attributes.".length);
      // The catalog checks the key first: a key that passes alone means the value was too long.
      const keyAlone: FieldViolation[] = [];
      validateFields("p", { attributes: { [key]: "" } }, keyAlone);
      const code = keyAlone.length === 0 ? "TOO_LONG" : "BAD_ATTRIBUTE";
      errors.push({ field: attrField(key), code, message: `attribute ${quote(key)}: ${description}` });
    }
  }
}

/** quote shows a value in a message, cut short so a report stays readable. */
export function quote(value: string): string {
  const cps = [...value.slice(0, 60)];
  return JSON.stringify(cps.length > 40 ? `${cps.slice(0, 40).join("")}…` : value);
}

/** tooLong is the draft of a record longer than maxLineBytes, which is skipped unread. */
export function tooLong(line: number, maxLineBytes: number): Draft {
  const errors = [{ field: "", code: "TOO_LONG", message: `the line is longer than ${maxLineBytes} bytes` }];
  return { line, sku: "", skuKnown: false, item: undefined, errors };
}

/** setOwn sets a key as an own property, even "__proto__", which an attribute key may be. */
export function setOwn(target: Record<string, string>, key: string, value: string): void {
  if (key === "__proto__") Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  else target[key] = value;
}
