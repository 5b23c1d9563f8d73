/**
 * Product rules: what a valid product is, how an update mask applies, and
 * when a change happens. Imports neither proto nor kysely.
 */
import { type FieldViolation, isKnownCurrency, MAX_MINOR_UNITS } from "@stockroom/common";

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
  version: number;
  createdAt: Date;
  updatedAt: Date;
}

/** ProductFields are the fields a caller can set. */
export type ProductFields = Pick<Product, "title" | "description" | "priceMinor" | "currency" | "stock" | "status" | "attributes">;

export const LIMITS = {
  sku: 128,
  title: 500,
  description: 10_000,
  attributes: 50,
  attributeKey: 64,
  attributeValue: 1_000,
  stock: 2_147_483_647,
  reason: 500,
} as const;

/** MASK_PATHS are the update_mask paths besides attributes.<key>. */
export const MASK_PATHS = ["title", "description", "price", "stock", "status", "attributes"] as const;
export type MaskPath = (typeof MASK_PATHS)[number] | `attributes.${string}`;

const ATTRIBUTE_KEY = /^[A-Za-z0-9_.-]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this pattern finds
const CONTROL = /[\u0000-\u001f\u007f]/;

/** validateSku appends a violation if sku is not a usable SKU. */
export function validateSku(field: string, sku: string, violations: FieldViolation[]): void {
  if (sku === "") violations.push({ field, description: "is required" });
  else if ([...sku].length > LIMITS.sku) violations.push({ field, description: `must be at most ${LIMITS.sku} characters` });
  else if (CONTROL.test(sku) || sku.trim() !== sku) {
    violations.push({ field, description: "must not contain control characters or surrounding spaces" });
  }
}

/** validateFields checks the named fields of a product; prefix is the request path, e.g. "product". */
export function validateFields(prefix: string, fields: Partial<ProductFields>, violations: FieldViolation[]): void {
  const at = (f: string) => `${prefix}.${f}`;
  if (fields.title !== undefined) {
    if (fields.title.trim() === "") violations.push({ field: at("title"), description: "is required" });
    else if ([...fields.title].length > LIMITS.title) {
      violations.push({ field: at("title"), description: `must be at most ${LIMITS.title} characters` });
    }
  }
  if (fields.description !== undefined && [...fields.description].length > LIMITS.description) {
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
}

function validateAttributes(field: string, attributes: Record<string, string>, violations: FieldViolation[]): void {
  const keys = Object.keys(attributes);
  if (keys.length > LIMITS.attributes) {
    violations.push({ field, description: `must have at most ${LIMITS.attributes} entries` });
  }
  for (const key of keys) {
    if (!ATTRIBUTE_KEY.test(key) || key.length > LIMITS.attributeKey) {
      violations.push({ field: `${field}.${key}`, description: `key must be 1 to ${LIMITS.attributeKey} characters of [A-Za-z0-9_.-]` });
    } else if ([...attributes[key]!].length > LIMITS.attributeValue) {
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
    switch (path) {
      case "title":
      case "description":
      case "stock":
      case "status":
        (next as unknown as Record<string, unknown>)[path] = patch[path];
        break;
      case "price":
        next.priceMinor = patch.priceMinor;
        next.currency = patch.currency;
        break;
      case "attributes":
        next.attributes = { ...patch.attributes };
        break;
      default: {
        const key = path.slice("attributes.".length);
        const value = patch.attributes[key];
        if (value === undefined) delete next.attributes[key];
        else next.attributes[key] = value;
      }
    }
  }
  next.attributes = sortedAttributes(next.attributes);
  return { next, changed: diffFields(current, next) };
}

/** diffFields lists the field-mask paths that differ between two states. */
export function diffFields(a: Product, b: Product): string[] {
  const changed: string[] = [];
  for (const f of ["title", "description", "stock", "status"] as const) if (a[f] !== b[f]) changed.push(f);
  if (a.priceMinor !== b.priceMinor || a.currency !== b.currency) changed.push("price");
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
