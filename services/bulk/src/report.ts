/**
 * The per-item report as CSV: one row per error (or one row for an item
 * without errors). Cells that a spreadsheet would run as a formula (starting
 * with = + - @, tab or CR) are prefixed with an apostrophe (OWASP CSV
 * injection), and every cell is quoted per RFC 4180 when it needs to be.
 */
import { jsonColumn } from "@stockroom/common/db";
import type { ItemError } from "./parse/types.ts";
import type { BulkJobItemRow } from "./store.ts";

export const REPORT_HEADER = "line_number,sku,outcome,field,code,message\r\n";

/** csvCell escapes one value for the report. */
export function csvCell(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

/** reportLines renders items as report rows. */
export function reportLines(items: Pick<BulkJobItemRow, "line_no" | "sku" | "outcome" | "errors">[]): string {
  let out = "";
  for (const item of items) {
    const errors = item.errors === null ? [] : jsonColumn<ItemError[]>(item.errors);
    const rows = errors.length > 0 ? errors : [{ field: "", code: "", message: "" }];
    for (const e of rows) {
      out += `${[String(item.line_no), item.sku, item.outcome.toUpperCase(), e.field, e.code, e.message].map(csvCell).join(",")}\r\n`;
    }
  }
  return out;
}
