/** Bulk file parsing: the public surface. */
import { asBuffer } from "@stockroom/common";
import { CsvRecordCounter, CsvScanner } from "./csv.ts";
import { JsonlScanner } from "./jsonl.ts";
import {
  BulkFileError,
  DEFAULT_MAX_LINE_BYTES,
  type BulkFormat,
  type Draft,
  type ParsedLine,
  type ParseOptions,
  type Scanner,
} from "./types.ts";

export { BulkFileError, DEFAULT_MAX_LINE_BYTES };
export type { BulkFormat, BulkItem, ItemError, ParsedLine, ParseOptions } from "./types.ts";

const BOM = [0xef, 0xbb, 0xbf];
const LF = 0x0a;

/**
 * parseBulkFile reads an uploaded bulk file as a stream and yields one
 * ParsedLine per record, valid or not, in file order. Memory stays bounded:
 * one record (at most maxLineBytes) and the set of skus seen, which the
 * DUPLICATE_SKU check needs. Problems with the file as a whole throw a
 * BulkFileError from the generator; lines yielded before it stay yielded.
 */
export async function* parseBulkFile(source: AsyncIterable<Uint8Array>, options: ParseOptions): AsyncGenerator<ParsedLine> {
  const { format, maxBytes, maxItems, maxLineBytes = DEFAULT_MAX_LINE_BYTES } = options;
  for (const [name, value] of Object.entries({ maxBytes, maxItems, maxLineBytes })) {
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a whole number, got ${value}`);
  }
  if (format !== "csv" && format !== "jsonl") throw new RangeError(`format must be csv or jsonl, got ${String(format)}`);
  const scanner: Scanner = format === "csv" ? new CsvScanner(maxLineBytes) : new JsonlScanner(maxLineBytes);
  /** firstLine maps each sku read so far to the line it was first on. */
  const firstLine = new Map<string, number>();
  let items = 0;
  let received = 0;
  // A file that starts as UTF-16 fails as a whole, before its first line.
  const bom = new BomStrip(refuseUtf16);

  const toLine = (draft: Draft): ParsedLine => {
    if (++items > maxItems) throw new BulkFileError("TOO_MANY_ITEMS", draft.line, `the file has more than ${maxItems} items`);
    const { line, sku, errors } = draft;
    if (draft.skuKnown) {
      const first = firstLine.get(sku);
      if (first === undefined) firstLine.set(sku, line);
      else errors.push({ field: "sku", code: "DUPLICATE_SKU", message: `sku ${JSON.stringify(sku)} is already on line ${first}` });
    }
    return errors.length === 0 && draft.item ? { line, kind: "valid", item: draft.item } : { line, kind: "invalid", sku, errors };
  };

  for await (const chunk of source) {
    if (!(chunk instanceof Uint8Array)) throw new TypeError("the source must yield bytes (Uint8Array), not decoded text");
    received += chunk.byteLength;
    if (received > maxBytes) throw new BulkFileError("FILE_TOO_LARGE", scanner.line, `the file is larger than ${maxBytes} bytes`);
    if (chunk.byteLength === 0) continue;
    const bytes = bom.push(chunk);
    if (bytes === undefined) continue;
    scanner.push(bytes);
    for (let draft = scanner.next(); draft !== undefined; draft = scanner.next()) yield toLine(draft);
  }
  const rest = bom.end();
  if (rest !== undefined) scanner.push(rest);
  scanner.end();
  for (let draft = scanner.next(); draft !== undefined; draft = scanner.next()) yield toLine(draft);
}

/**
 * ItemBound counts, without parsing, at most how many items a file holds:
 * its records (CSV: by the scanner's quoting rules, less the header) or its
 * lines (JSON Lines). It is never less than what parseBulkFile counts, so a
 * file within the bound cannot fail TOO_MANY_ITEMS.
 */
export class ItemBound {
  readonly #format: BulkFormat;
  readonly #csv = new CsvRecordCounter();
  /** As parseBulkFile: a BOM is not part of the first record. */
  readonly #bom = new BomStrip();
  #lines = 0;
  #last = LF;

  constructor(format: BulkFormat) {
    if (format !== "csv" && format !== "jsonl") throw new RangeError(`format must be csv or jsonl, got ${String(format)}`);
    this.#format = format;
  }

  push(chunk: Uint8Array): void {
    const bytes = this.#bom.push(chunk);
    if (bytes !== undefined) this.#count(bytes);
  }

  /** items is the bound for what was pushed, taken as the whole file. */
  items(): number {
    const rest = this.#bom.end();
    if (rest !== undefined) this.#count(rest);
    if (this.#format === "csv") return Math.max(0, this.#csv.records - 1);
    return this.#lines + (this.#last === LF ? 0 : 1);
  }

  #count(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#format === "csv") {
      this.#csv.push(bytes);
      return;
    }
    for (let at = bytes.indexOf(LF); at !== -1; at = bytes.indexOf(LF, at + 1)) this.#lines++;
    this.#last = bytes[bytes.length - 1]!;
  }
}

/**
 * BomStrip drops a UTF-8 byte order mark from the start of a stream of
 * chunks: the first bytes are held back until it is known whether they are
 * one (a first chunk shorter than a BOM), and passed on without it.
 */
class BomStrip {
  #head: Buffer | undefined = Buffer.alloc(0);
  readonly #checkStart: ((start: Buffer) => void) | undefined;

  /** checkStart, if given, sees the stream's first bytes passed on (without the BOM) before they go, and may throw. */
  constructor(checkStart?: (start: Buffer) => void) {
    this.#checkStart = checkStart;
  }

  /** push returns the bytes to pass on, or undefined while they are held back. */
  push(chunk: Uint8Array): Buffer | undefined {
    let bytes = asBuffer(chunk);
    if (this.#head === undefined) return bytes;
    if (this.#head.length > 0 || bytes.length < BOM.length) {
      this.#head = Buffer.concat([this.#head, bytes]);
      if (this.#head.length < BOM.length) return undefined;
      bytes = this.#head;
    }
    return this.#start(bytes);
  }

  /** end returns what is still held back (a stream shorter than a BOM), if anything. */
  end(): Buffer | undefined {
    const head = this.#head;
    return head !== undefined && head.length > 0 ? this.#start(head) : undefined;
  }

  #start(bytes: Buffer): Buffer {
    this.#head = undefined;
    const start = withoutBom(bytes);
    this.#checkStart?.(start);
    return start;
  }
}

/**
 * refuseUtf16 fails a file that starts with a UTF-16 (or UTF-32) byte order
 * mark, as Excel's "Unicode Text" and some exports save it: every line of it
 * would be refused one by one, the header first.
 */
function refuseUtf16(bytes: Buffer): void {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    throw new BulkFileError(
      "NOT_UTF8",
      1,
      "the file is UTF-16, not UTF-8 (it starts with a UTF-16 byte order mark): save the file as UTF-8 (in Excel: CSV UTF-8)",
    );
  }
}

function withoutBom(bytes: Buffer): Buffer {
  return BOM.every((b, i) => bytes[i] === b) ? bytes.subarray(BOM.length) : bytes;
}
