/**
 * Field conversion and validation shared by CSV and JSON Lines: text values
 * become a BulkItem, and every problem becomes an ItemError. The product
 * rules are the catalog's (validateSku, validateFields); this file only adds
 * the file format's own rules (number syntax, currency digits, status names).
 */
import { type FieldViolation, currencyDigits, isKnownCurrency, longerThan } from "@stockroom/common";
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
  gtin?: string;
  brand?: string;
  /** A decimal in the row's currency, or "" to clear it. */
  compare_at_price?: string;
  /** Whole grams, or "" to clear it. */
  weight_grams?: string;
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
      const code = raw.sku === "" ? "MISSING_SKU" : longerThan(raw.sku, LIMITS.sku) ? "TOO_LONG" : "BAD_SKU";
      errors.push({ field: "sku", code, message: `sku ${v.description}` });
    }
  }
  if (raw.title !== undefined) item.title = raw.title;
  if (raw.description !== undefined) item.description = raw.description;
  if (raw.currency !== undefined) item.currency = raw.currency;
  else if (raw.price !== undefined && !broken("currency")) {
    errors.push({ field: "currency", code: "MISSING_CURRENCY", message: "a price needs a currency" });
  }
  if (raw.price !== undefined) {
    const minor = convertPrice("price", raw.price, raw.currency, errors);
    if (minor !== undefined) item.priceMinor = minor;
  } else if (raw.currency !== undefined && !broken("price")) {
    errors.push({ field: "price", code: "MISSING_PRICE", message: "a currency needs a price" });
  }
  if (raw.stock !== undefined) {
    const stock = convertWhole("stock", raw.stock, LIMITS.stock, errors);
    if (stock !== undefined) item.stock = stock;
  }
  if (raw.status !== undefined) {
    const status = raw.status.toLowerCase();
    if (STATUSES.has(status)) item.status = status as ProductStatus;
    else errors.push({ field: "status", code: "BAD_STATUS", message: `status ${quote(raw.status)} is not one of active, draft, archived` });
  }
  if (raw.attributes !== undefined) item.attributes = raw.attributes;
  if (raw.gtin !== undefined) item.gtin = raw.gtin;
  if (raw.brand !== undefined) item.brand = raw.brand;
  if (raw.compare_at_price === "") item.compareAtMinor = null;
  else if (raw.compare_at_price !== undefined) {
    // In the row's currency, like price: without one, its digits are unknown.
    if (raw.currency === undefined && !broken("currency")) {
      errors.push({ field: "compare_at_price", code: "MISSING_CURRENCY", message: "a compare_at_price needs a currency" });
    }
    const minor = convertPrice("compare_at_price", raw.compare_at_price, raw.currency, errors);
    if (minor !== undefined) item.compareAtMinor = minor;
  }
  if (raw.weight_grams === "") item.weightGrams = null;
  else if (raw.weight_grams !== undefined) {
    const grams = convertWhole("weight_grams", raw.weight_grams, LIMITS.weightGrams, errors);
    if (grams !== undefined) item.weightGrams = grams;
  }
  catalogRules(item, errors, attrField);
  return item;
}

/** convertPrice turns a decimal in major units into integer minor units, from the text (no float math). */
function convertPrice(field: string, text: string, currency: string | undefined, errors: ItemError[]): number | undefined {
  const m = DECIMAL.exec(text);
  if (!m) {
    errors.push({ field, code: "BAD_NUMBER", message: `${field} ${quote(text)} is not a decimal number such as 12.34` });
    return undefined;
  }
  const [, sign, whole, fraction = ""] = m;
  if (sign) errors.push({ field, code: "NEGATIVE_PRICE", message: `${field} must not be negative` });
  // Without a known currency the digits are unknown; the currency's own error says why.
  if (currency === undefined || !isKnownCurrency(currency)) return undefined;
  const digits = currencyDigits(currency);
  if (fraction.length > digits) {
    errors.push({
      field,
      code: "BAD_NUMBER",
      message: `${field} ${quote(text)} has ${fraction.length} decimals; ${currency} has ${digits}`,
    });
    return undefined;
  }
  // At most 10^15 minor units are allowed; a longer digit string still compares as too large.
  return sign ? undefined : Number(whole! + fraction.padEnd(digits, "0"));
}

/** convertWhole reads a whole number from 0 to max. */
function convertWhole(field: string, text: string, max: number, errors: ItemError[]): number | undefined {
  const m = INTEGER.exec(text);
  if (!m) errors.push({ field, code: "BAD_NUMBER", message: `${field} ${quote(text)} is not a whole number` });
  else if (m[1])
    errors.push({ field, code: field === "stock" ? "NEGATIVE_STOCK" : "NEGATIVE_NUMBER", message: `${field} must not be negative` });
  else if (Number(m[2]) > max) errors.push({ field, code: "TOO_LARGE", message: `${field} must be at most ${max}` });
  else return Number(m[2]);
  return undefined;
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
    } else if (f === "gtin") {
      errors.push({ field: "gtin", code: "BAD_GTIN", message: `gtin ${quote(item.gtin!)} ${description}` });
    } else if (f === "brand") {
      errors.push({
        field: "brand",
        code: longerThan(item.brand!, LIMITS.brand) ? "TOO_LONG" : "BAD_BRAND",
        message: `brand ${description}`,
      });
    } else if (f === "compare_at_price.minor_units") {
      errors.push({ field: "compare_at_price", code: "TOO_LARGE", message: `compare_at_price ${description} minor units` });
    } else if (f === "weight_grams") {
      errors.push({ field: "weight_grams", code: "TOO_LARGE", message: `weight_grams ${description}` });
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
