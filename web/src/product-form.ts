/** The product editor's model: the form's text values, what changed, and the UpdateProduct call that sends exactly that. */
import { ProductStatus, type Product } from "@stockroom/sdk/web";
import { decimal, parseDecimal } from "./format.ts";

export interface Draft {
  title: string;
  description: string;
  price: string;
  currency: string;
  compareAt: string;
  stock: string;
  status: string;
  gtin: string;
  brand: string;
  weight: string;
}

/** FIELDS: each editable field, its label, and the update_mask path it belongs to. */
export const FIELDS: { key: keyof Draft; label: string; path: string }[] = [
  { key: "title", label: "Title", path: "title" },
  { key: "description", label: "Description", path: "description" },
  { key: "price", label: "Price", path: "price" },
  { key: "currency", label: "Currency", path: "price" },
  { key: "compareAt", label: "Compare-at price (was)", path: "compare_at_price" },
  { key: "stock", label: "Stock", path: "stock" },
  { key: "status", label: "Status", path: "status" },
  { key: "gtin", label: "GTIN", path: "gtin" },
  { key: "brand", label: "Brand", path: "brand" },
  { key: "weight", label: "Weight (grams)", path: "weight_grams" },
];

export function draftOf(p: Product): Draft {
  const currency = p.price?.currencyCode ?? "EUR";
  return {
    title: p.title,
    description: p.description,
    price: p.price ? decimal(p.price.minorUnits, currency) : "",
    currency,
    compareAt: p.compareAtPrice ? decimal(p.compareAtPrice.minorUnits, p.compareAtPrice.currencyCode) : "",
    stock: String(p.stock),
    status: String(p.status),
    gtin: p.gtin,
    brand: p.brand,
    weight: p.weightGrams === undefined ? "" : String(p.weightGrams),
  };
}

/** changedPaths lists the mask paths whose fields differ between two drafts. */
export function changedPaths(base: Draft, draft: Draft): string[] {
  const paths = new Set<string>();
  for (const f of FIELDS) if (base[f.key] !== draft[f.key]) paths.add(f.path);
  // A currency change moves the compare-at price with it (the server wants both in one change).
  if (paths.has("price") && base.currency !== draft.currency && draft.compareAt !== "") paths.add("compare_at_price");
  return [...paths];
}

/** showValue is a field as the conflict view and history show it. */
export function showValue(d: Draft, path: string): string {
  switch (path) {
    case "price":
      return d.price ? `${d.price} ${d.currency}` : "—";
    case "compare_at_price":
      return d.compareAt ? `${d.compareAt} ${d.currency}` : "none";
    case "status":
      return ProductStatus[Number(d.status)]?.toLowerCase() ?? d.status;
    case "weight_grams":
      return d.weight === "" ? "none" : `${d.weight} g`;
    default: {
      const f = FIELDS.find((x) => x.path === path);
      const v = f ? d[f.key] : "";
      return v === "" ? "none" : v;
    }
  }
}

/** overlay puts the paths the merchant changed onto another version of the product (re-applying them after a conflict). */
export function overlay(onto: Draft, mine: Draft, paths: string[]): Draft {
  const out = { ...onto };
  for (const f of FIELDS) if (paths.includes(f.path)) out[f.key] = mine[f.key];
  return out;
}

export type Problems = Partial<Record<keyof Draft, string>>;

/** checkDraft finds what the form can tell before asking the server. */
export function checkDraft(d: Draft): Problems {
  const p: Problems = {};
  if (d.title.trim() === "") p.title = "A product needs a title.";
  if (!/^[A-Z]{3}$/.test(d.currency)) p.currency = "Use a three-letter currency code such as EUR.";
  else if (parseDecimal(d.price, d.currency) === undefined) p.price = "Enter a price such as 12.90 (a dot for decimals, no currency sign).";
  if (d.compareAt !== "" && p.currency === undefined && parseDecimal(d.compareAt, d.currency) === undefined)
    p.compareAt = "Enter a price such as 19.90, or leave it empty.";
  if (!/^\d+$/.test(d.stock)) p.stock = "Stock is a whole number, 0 or more.";
  if (d.weight !== "" && !/^\d+$/.test(d.weight)) p.weight = "Weight is whole grams, or empty.";
  if (d.gtin !== "" && !/^(\d{8}|\d{12,14})$/.test(d.gtin)) p.gtin = "A GTIN has 8, 12, 13 or 14 digits.";
  return p;
}

/** updateRequest builds UpdateProduct for the changed paths only, conditioned on the etag. */
export function updateRequest(sku: string, etag: string, d: Draft, paths: string[]) {
  const money = (text: string) => ({ currencyCode: d.currency, minorUnits: parseDecimal(text, d.currency) ?? 0n });
  return {
    product: {
      sku,
      etag,
      title: d.title,
      description: d.description,
      price: money(d.price),
      ...(d.compareAt === "" ? {} : { compareAtPrice: money(d.compareAt) }),
      stock: Number(d.stock),
      status: Number(d.status) as ProductStatus,
      gtin: d.gtin,
      brand: d.brand,
      ...(d.weight === "" ? {} : { weightGrams: Number(d.weight) }),
    },
    updateMask: { paths },
  };
}
