/**
 * The public shapes of bulk file parsing: what a line becomes, what an item
 * error looks like, and the error that stops a whole file.
 */
import type { ProductStatus } from "@stockroom/catalog";

export type BulkFormat = "csv" | "jsonl";

/** BulkItem is what a line names, already converted; an absent field is one the file does not touch. */
export interface BulkItem {
  sku: string;
  title?: string;
  description?: string;
  priceMinor?: number;
  currency?: string;
  stock?: number;
  status?: ProductStatus;
  /** Only the keys the line names; an empty value removes the key. */
  attributes?: Record<string, string>;
  /** "" clears it. */
  gtin?: string;
  /** "" clears it. */
  brand?: string;
  /** In the item's currency; null clears it. */
  compareAtMinor?: number | null;
  /** null clears it. */
  weightGrams?: number | null;
}

/** ItemError is one problem of one line. */
export interface ItemError {
  /** The column, e.g. "price", "attr.color" (JSON Lines: "attributes.color"); "" for the whole line. */
  field: string;
  /** UPPER_SNAKE, e.g. BAD_NUMBER. */
  code: string;
  message: string;
}

/** ParsedLine is one record of the file: line is the 1-based physical line it starts on. */
export type ParsedLine =
  | { line: number; kind: "valid"; item: BulkItem }
  | { line: number; kind: "invalid"; sku: string; errors: ItemError[] };

export interface ParseOptions {
  format: BulkFormat;
  /** The file may hold at most this many bytes (a BOM included). */
  maxBytes: number;
  /** The file may hold at most this many items (blank lines and the header are not items). */
  maxItems: number;
  /** A longer record is reported as TOO_LONG and not kept in memory; default DEFAULT_MAX_LINE_BYTES. */
  maxLineBytes?: number;
}

/** SAVE_AS_UTF8 ends every message about text that is not UTF-8: what the merchant can do about it. */
export const SAVE_AS_UTF8 = "save the file as UTF-8, not in a legacy encoding such as Windows-1252 or Shift_JIS";

/**
 * DEFAULT_MAX_LINE_BYTES bounds one record. The largest valid CSV record
 * (every text at its limit, 4-byte characters, every quote doubled) is under
 * 0.5 MiB; JSON escapes (\uXXXX) can double that.
 */
export const DEFAULT_MAX_LINE_BYTES = 2 * 1024 * 1024;

/**
 * BulkFileError is a problem with the file as a whole (its header, its size,
 * its item count): nothing after it is read. line is where it was found.
 */
export class BulkFileError extends Error {
  override name = "BulkFileError";
  /** UPPER_SNAKE: UNKNOWN_COLUMN, BAD_COLUMN, DUPLICATE_COLUMN, MISSING_SKU_COLUMN, MISSING_CURRENCY_COLUMN, MISSING_PRICE_COLUMN, TOO_MANY_COLUMNS, MALFORMED_HEADER, WRONG_DELIMITER, WRONG_FORMAT, NOT_UTF8, EMPTY_FILE, FILE_TOO_LARGE or TOO_MANY_ITEMS. */
  readonly code: string;
  readonly line: number;
  /** The column at fault, for header errors. */
  readonly column: string | undefined;
  constructor(code: string, line: number, message: string, column?: string) {
    super(message);
    this.code = code;
    this.line = line;
    this.column = column;
  }
}

/** Draft is a record as a scanner reads it, before file-wide checks (count, duplicates). */
export interface Draft {
  line: number;
  sku: string;
  /** skuKnown: the sku was read and is valid, so it takes part in the duplicate check. */
  skuKnown: boolean;
  item: BulkItem | undefined;
  errors: ItemError[];
}

/** Scanner turns chunks into drafts; the caller pushes a chunk whenever next() returns undefined. */
export interface Scanner {
  /** The physical line being read. */
  readonly line: number;
  push(chunk: Buffer): void;
  /** end says no chunk will follow. */
  end(): void;
  /** next returns the next record, or undefined when it needs a chunk (or, after end, when done). */
  next(): Draft | undefined;
}
