/**
 * Product rules: what a valid product is, how an update mask applies, and
 * when a change happens. Imports neither proto nor kysely.
 */
import { type FieldViolation, hasControlCharacters, isKnownCurrency, MAX_MINOR_UNITS, longerThan } from "@stockroom/common";

export type ProductStatus = "active" | "draft" | "archived";

/** Product is the stored state of one product. */
export interface Product {
  id: string;
  sku: string;
  title: string;
  description: string;
  priceMinor: number;
  currency: string;
  stock: number;
  status: ProductStatus;
  attributes: Record<string, string>;
  /** GTIN-8/12/13/14 digits with a valid check digit; "" for none. */
  gtin: string;
  /** "" for none. */
  brand: string;
  /** The "was" price in the product's currency; null for none. */
  compareAtMinor: number | null;
  /** null when not known. */
  weightGrams: number | null;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

/** ProductFields are the fields a caller can set. */
export type ProductFields = Pick<
  Product,
  | "title"
  | "description"
  | "priceMinor"
  | "currency"
  | "stock"
  | "status"
  | "attributes"
  | "gtin"
  | "brand"
  | "compareAtMinor"
  | "weightGrams"
>;

/** NO_MERCHANDISING are the values of the fields added in 2026-12 (gtin, brand, compare-at price, weight) on a product that sets none. */
export const NO_MERCHANDISING = { gtin: "", brand: "", compareAtMinor: null, weightGrams: null } as const satisfies Partial<Product>;

export const LIMITS = {
  sku: 128,
  title: 500,
  description: 10_000,
  attributes: 50,
  attributeKey: 64,
  attributeValue: 1_000,
  stock: 2_147_483_647,
  reason: 500,
  brand: 200,
  weightGrams: 2_147_483_647,
} as const;

/** MASK_PATHS are the update_mask paths besides attributes.<key>. */
export const MASK_PATHS = [
  "title",
  "description",
  "price",
  "stock",
  "status",
  "attributes",
  "gtin",
  "brand",
  "compare_at_price",
  "weight_grams",
] as const;
export type MaskPath = (typeof MASK_PATHS)[number] | `attributes.${string}`;

const ATTRIBUTE_KEY = /^[A-Za-z0-9_.-]+$/;
/** isPlainText: no control characters and no surrounding spaces (a SKU, a brand). */
function isPlainText(text: string): boolean {
  return !hasControlCharacters(text) && text.trim() === text;
}

/** validateSku appends a violation if sku is not a usable SKU. */
export function validateSku(field: string, sku: string, violations: FieldViolation[]): void {
  if (sku === "") violations.push({ field, description: "is required" });
  else if (longerThan(sku, LIMITS.sku)) violations.push({ field, description: `must be at most ${LIMITS.sku} characters` });
  else if (!isPlainText(sku)) {
    violations.push({ field, description: "must not contain control characters or surrounding spaces" });
  }
}

/** validateFields checks the named fields of a product; prefix is the request path, e.g. "product". */
export function validateFields(prefix: string, fields: Partial<ProductFields>, violations: FieldViolation[]): void {
  const at = (f: string) => `${prefix}.${f}`;
  if (fields.title !== undefined) {
    if (fields.title.trim() === "") violations.push({ field: at("title"), description: "is required" });
    else if (longerThan(fields.title, LIMITS.title)) {
      violations.push({ field: at("title"), description: `must be at most ${LIMITS.title} characters` });
    }
  }
  if (fields.description !== undefined && longerThan(fields.description, LIMITS.description)) {
    violations.push({ field: at("description"), description: `must be at most ${LIMITS.description} characters` });
  }
  if (fields.currency !== undefined && !isKnownCurrency(fields.currency)) {
    violations.push({ field: at("price.currency_code"), description: `"${fields.currency}" is not an ISO 4217 currency code` });
  }
  if (fields.priceMinor !== undefined) {
    if (fields.priceMinor < 0) violations.push({ field: at("price.minor_units"), description: "must not be negative" });
    else if (fields.priceMinor > Number(MAX_MINOR_UNITS)) {
      violations.push({ field: at("price.minor_units"), description: `must be at most ${MAX_MINOR_UNITS}` });
    }
  }
  if (fields.stock !== undefined && fields.stock < 0) {
    violations.push({ field: at("stock"), description: "must not be negative" });
  }
  if (fields.attributes !== undefined) validateAttributes(at("attributes"), fields.attributes, violations);
  if (fields.gtin !== undefined && fields.gtin !== "") {
    const problem = gtinProblem(fields.gtin);
    if (problem) violations.push({ field: at("gtin"), description: problem });
  }
  if (fields.brand !== undefined) {
    if (longerThan(fields.brand, LIMITS.brand))
      violations.push({ field: at("brand"), description: `must be at most ${LIMITS.brand} characters` });
    else if (!isPlainText(fields.brand)) {
      violations.push({ field: at("brand"), description: "must not contain control characters or surrounding spaces" });
    }
  }
  if (fields.compareAtMinor !== undefined && fields.compareAtMinor !== null) {
    if (fields.compareAtMinor < 0) violations.push({ field: at("compare_at_price.minor_units"), description: "must not be negative" });
    else if (fields.compareAtMinor > Number(MAX_MINOR_UNITS)) {
      violations.push({ field: at("compare_at_price.minor_units"), description: `must be at most ${MAX_MINOR_UNITS}` });
    }
  }
  if (fields.weightGrams !== undefined && fields.weightGrams !== null) {
    if (!Number.isInteger(fields.weightGrams) || fields.weightGrams < 0 || fields.weightGrams > LIMITS.weightGrams) {
      violations.push({ field: at("weight_grams"), description: `must be a whole number from 0 to ${LIMITS.weightGrams}` });
    }
  }
}

/**
 * gtinProblem says what is wrong with a GTIN, or undefined: 8, 12, 13 or 14
 * digits (GTIN-8, UPC-A, EAN-13, GTIN-14) whose last is the GS1 check digit
 * (weights 3 and 1 alternating from the right, excluding the check digit).
 */
export function gtinProblem(gtin: string): string | undefined {
  // The two ways a spreadsheet breaks a GTIN it took for a number.
  if (/^\d(\.\d+)?e\+?\d+$/i.test(gtin))
    return "must be 8, 12, 13 or 14 digits, not a number in scientific notation (a spreadsheet showed it so and saved it rounded): keep the column as text";
  if (/^\d{7}$|^\d{11}$/.test(gtin))
    return `must be 8, 12, 13 or 14 digits, not ${gtin.length} (a spreadsheet may have dropped a leading 0: keep the column as text)`;
  if (!/^\d+$/.test(gtin) || ![8, 12, 13, 14].includes(gtin.length)) return "must be 8, 12, 13 or 14 digits";
  let sum = 0;
  for (let i = gtin.length - 2, weight = 3; i >= 0; i--, weight = 4 - weight) sum += Number(gtin[i]) * weight;
  const check = (10 - (sum % 10)) % 10;
  return Number(gtin.at(-1)) === check ? undefined : `has check digit ${gtin.at(-1)}, but its digits give ${check}`;
}

/**
 * validateCompareAt checks that a product's compare-at price is in its
 * price's currency. given is the currency the caller named for the
 * compare-at price in this change (undefined: it kept the stored one, which
 * was in before's currency), so changing the price's currency also needs a
 * new compare-at price, or clearing it, in the same change.
 */
export function validateCompareAt(
  field: string,
  before: Pick<Product, "currency"> | undefined,
  next: Pick<Product, "currency" | "compareAtMinor">,
  given: string | undefined,
  violations: FieldViolation[],
): void {
  if (next.compareAtMinor === null) return;
  if (given !== undefined) {
    if (given !== next.currency)
      violations.push({ field, description: `must be in the price's currency ${next.currency}, not "${given}"` });
  } else if (before && before.currency !== next.currency) {
    violations.push({
      field,
      description: `is in ${before.currency}: a price in ${next.currency} needs a compare-at price in ${next.currency} (or none) in the same change`,
    });
  }
}

function validateAttributes(field: string, attributes: Record<string, string>, violations: FieldViolation[]): void {
  const keys = Object.keys(attributes);
  if (keys.length > LIMITS.attributes) {
    violations.push({ field, description: `must have at most ${LIMITS.attributes} entries` });
  }
  for (const key of keys) {
    if (!ATTRIBUTE_KEY.test(key) || key.length > LIMITS.attributeKey) {
      violations.push({ field: `${field}.${key}`, description: `key must be 1 to ${LIMITS.attributeKey} characters of [A-Za-z0-9_.-]` });
    } else if (longerThan(attributes[key]!, LIMITS.attributeValue)) {
      violations.push({ field: `${field}.${key}`, description: `value must be at most ${LIMITS.attributeValue} characters` });
    }
  }
}

/** validateMaskPath tells whether path is a supported update_mask path. */
export function isMaskPath(path: string): path is MaskPath {
  if ((MASK_PATHS as readonly string[]).includes(path)) return true;
  const key = path.startsWith("attributes.") ? path.slice("attributes.".length) : undefined;
  return key !== undefined && ATTRIBUTE_KEY.test(key) && key.length <= LIMITS.attributeKey;
}

/**
 * applyMask returns the product with the masked fields taken from patch, and
 * the paths whose values really changed (field-mask style, e.g. "price",
 * "attributes.color"). attributes.<key> absent from patch removes the key.
 */
export function applyMask(current: Product, patch: ProductFields, paths: readonly MaskPath[]): { next: Product; changed: string[] } {
  const next: Product = { ...current, attributes: { ...current.attributes } };
  for (const path of paths) {
    if (isFieldPath(path)) {
      Object.assign(next, maskedFields(patch, [path]));
      if (path === "attributes") next.attributes = { ...patch.attributes };
      continue;
    }
    const key = path.slice("attributes.".length);
    const value = patch.attributes[key];
    if (value === undefined) delete next.attributes[key];
    else next.attributes[key] = value;
  }
  next.attributes = sortedAttributes(next.attributes);
  return { next, changed: diffFields(current, next) };
}

/** MASK_FIELDS are the product fields each update_mask path (but attributes.<key>) sets. */
const MASK_FIELDS: Readonly<Record<(typeof MASK_PATHS)[number], readonly (keyof ProductFields)[]>> = {
  title: ["title"],
  description: ["description"],
  price: ["priceMinor", "currency"],
  stock: ["stock"],
  status: ["status"],
  attributes: ["attributes"],
  gtin: ["gtin"],
  brand: ["brand"],
  compare_at_price: ["compareAtMinor"],
  weight_grams: ["weightGrams"],
};

function isFieldPath(path: MaskPath): path is (typeof MASK_PATHS)[number] {
  return Object.hasOwn(MASK_FIELDS, path);
}

/**
 * maskedFields picks the fields the mask's paths name from patch, for
 * validation; attributes.<key> contributes its key where patch sets it.
 */
export function maskedFields(patch: ProductFields, paths: readonly MaskPath[]): Partial<ProductFields> {
  const out: Partial<ProductFields> = {};
  for (const path of paths) {
    if (isFieldPath(path)) {
      for (const field of MASK_FIELDS[path]) Object.assign(out, { [field]: patch[field] });
    } else {
      const key = path.slice("attributes.".length);
      if (patch.attributes[key] !== undefined) out.attributes = { ...out.attributes, [key]: patch.attributes[key]! };
    }
  }
  return out;
}

/** diffFields lists the field-mask paths that differ between two states. */
export function diffFields(a: Product, b: Product): string[] {
  const changed: string[] = [];
  for (const f of ["title", "description", "stock", "status"] as const) if (a[f] !== b[f]) changed.push(f);
  if (a.priceMinor !== b.priceMinor || a.currency !== b.currency) changed.push("price");
  if (a.gtin !== b.gtin) changed.push("gtin");
  if (a.brand !== b.brand) changed.push("brand");
  // A compare-at price is in the price's currency: a currency change changes it too.
  if (a.compareAtMinor !== b.compareAtMinor || (a.compareAtMinor !== null && a.currency !== b.currency)) changed.push("compare_at_price");
  if (a.weightGrams !== b.weightGrams) changed.push("weight_grams");
  const keys = new Set([...Object.keys(a.attributes), ...Object.keys(b.attributes)]);
  for (const k of [...keys].sort()) if (a.attributes[k] !== b.attributes[k]) changed.push(`attributes.${k}`);
  return changed;
}

/** sortedAttributes returns the map with keys in order, so stored JSON is canonical. */
export function sortedAttributes(attributes: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(attributes).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * changeTime is when a change to `before` happens: now, but always at least
 * 1 ms after the product's previous change. Event ids are ULIDs of this
 * time, and the outbox relay publishes in event id order, so this keeps a
 * product's events in version order even when two catalog hosts' clocks
 * disagree (a host 5 ms behind would otherwise stamp version N+1 before N).
 */
export function changeTime(before: Pick<Product, "updatedAt">, now = new Date()): Date {
  return now.getTime() > before.updatedAt.getTime() ? now : new Date(before.updatedAt.getTime() + 1);
}

/** ProductVersion names one version of one product, as a read model must hold it. */
export interface ProductVersion {
  merchantId: string;
  sku: string;
  productId: string;
  version: number;
}

/**
 * ProjectionWaiter lets UpdateProduct wait for a read model (the search
 * projection implements it), without the catalog depending on its code.
 */
export interface ProjectionWaiter {
  /**
   * waitFor resolves once the projection holds this product version or a
   * newer one (a later version, a delete, or a recreated SKU); it rejects
   * when signal aborts.
   */
  waitFor(target: ProductVersion, signal: AbortSignal): Promise<void>;
}
