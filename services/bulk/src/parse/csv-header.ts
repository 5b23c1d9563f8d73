/**
 * The CSV header row: which columns a file names. Column names are matched
 * in any case with surrounding spaces ignored; attribute keys keep their case
 * and must be keys the catalog accepts. Every problem here is a file error.
 */
import type { FieldViolation } from "@stockroom/common";
import { LIMITS, validateFields } from "@stockroom/catalog";
import { quote } from "./fields.ts";
import { BulkFileError } from "./types.ts";

const FIELD_NAMES = [
  "sku",
  "title",
  "description",
  "price",
  "currency",
  "stock",
  "status",
  "gtin",
  "brand",
  "compare_at_price",
  "weight_grams",
] as const;
export type Kind = (typeof FIELD_NAMES)[number] | "attr";

export interface Column {
  /** name is canonical: "price", "attr.color". */
  name: string;
  kind: Kind;
  /** key is the attribute key, for kind "attr". */
  key: string;
}

export const attrColumn = (key: string) => `attr.${key}`;

/** readHeader turns the header's cells into columns, or throws the first problem it finds. */
export function readHeader(cells: readonly string[], line: number): Column[] {
  const columns: Column[] = [];
  for (const cell of cells) {
    const column = toColumn(cell, line);
    if (columns.some((c) => c.name === column.name)) {
      throw new BulkFileError("DUPLICATE_COLUMN", line, `column ${quote(column.name)} is named twice`, column.name);
    }
    columns.push(column);
  }
  const has = (kind: Kind) => columns.some((c) => c.kind === kind);
  if (!has("sku")) throw new BulkFileError("MISSING_SKU_COLUMN", line, "the header has no sku column");
  // A currency alone would reprice every product; a price alone has no unit.
  if (has("price") && !has("currency")) {
    throw new BulkFileError("MISSING_CURRENCY_COLUMN", line, "a price column needs a currency column", "price");
  }
  if (has("currency") && !has("price")) {
    throw new BulkFileError("MISSING_PRICE_COLUMN", line, "a currency column needs a price column", "currency");
  }
  if (has("compare_at_price") && !has("currency")) {
    throw new BulkFileError(
      "MISSING_CURRENCY_COLUMN",
      line,
      "a compare_at_price column needs the price and currency columns (it is in the price's currency)",
      "compare_at_price",
    );
  }
  const attributes = columns.filter((c) => c.kind === "attr").length;
  if (attributes > LIMITS.attributes) {
    throw new BulkFileError("TOO_MANY_COLUMNS", line, `at most ${LIMITS.attributes} attr.<name> columns, not ${attributes}`);
  }
  return columns;
}

/**
 * refuseOtherDelimiter explains a header record of one column (its raw
 * text, quotes and all) that names sku among names split by semicolons or
 * tabs: Excel saves "CSV" with semicolons in many locales (and "Text" with
 * tabs), which would otherwise read as one unknown or badly quoted column.
 */
export function refuseOtherDelimiter(record: string, line: number): void {
  for (const [delimiter, name] of [
    [";", "semicolons"],
    ["\t", "tabs"],
  ] as const) {
    const names = record.split(delimiter).map((c) =>
      c
        .trim()
        .replace(/^"(.*)"$/, "$1")
        .toLowerCase(),
    );
    if (names.length > 1 && names.includes("sku")) {
      throw new BulkFileError(
        "WRONG_DELIMITER",
        line,
        `the header's columns are separated by ${name}, not commas: save the file as comma-separated CSV (in Excel: CSV UTF-8), with "." as the decimal point`,
      );
    }
  }
}

function toColumn(cell: string, line: number): Column {
  const written = cell.trim();
  const lower = written.toLowerCase();
  if (lower.startsWith("attr.")) {
    const key = written.slice("attr.".length);
    const violations: FieldViolation[] = [];
    validateFields("h", { attributes: { [key]: "" } }, violations);
    if (violations.length > 0) {
      throw new BulkFileError("BAD_COLUMN", line, `column ${quote(written)}: attribute ${violations[0]!.description}`, written);
    }
    return { name: attrColumn(key), kind: "attr", key };
  }
  if ((FIELD_NAMES as readonly string[]).includes(lower)) return { name: lower, kind: lower as Kind, key: "" };
  throw new BulkFileError(
    "UNKNOWN_COLUMN",
    line,
    `unknown column ${quote(written)}; columns are ${FIELD_NAMES.join(", ")} and attr.<name>`,
    written,
  );
}
