/**
 * CSV (RFC 4180) as a byte-level state machine. Records end at an LF outside
 * quotes (a CR before it is dropped); a quote opens a quoted field only at a
 * field's start, so a stray quote never swallows the following lines. Field
 * bounds are byte offsets into the chunk, or into the carry when a chunk
 * boundary cut the record, and text is decoded once the record is whole
 * (csv-record.ts), so a chunk may end anywhere: inside a character, a CRLF
 * or a quoted field.
 */
import { Carry } from "./carry.ts";
import type { Column } from "./csv-header.ts";
import { F_ESCAPED, F_JUNK, F_QUOTED, F_STRAY, headerColumns, isBlank, itemDraft, unclosedDraft, type Fields } from "./csv-record.ts";
import { tooLong } from "./fields.ts";
import { BulkFileError, type Draft, type Scanner } from "./types.ts";

const LF = 0x0a;
const CR = 0x0d;
const QUOTE = 0x22;
const COMMA = 0x2c;

// States of the scanner.
const FIELD = 0; // at the start of a field
const BARE = 1; // inside an unquoted field
const QUOTED = 2; // inside a quoted field
const QUOTE_SEEN = 3; // a quote in a quoted field: its end, or the first of ""
const QUOTE_CR = 4; // a CR after a closing quote: the record's end if an LF follows

const EMPTY = Buffer.alloc(0);
const MAX_HEADER_FIELDS = 1000;

export class CsvScanner implements Scanner {
  line = 1;
  readonly #maxLineBytes: number;
  #buf: Buffer = EMPTY;
  #pos = 0;
  #ended = false;
  #done = false;
  #carry = new Carry();
  /**
   * Offsets are record coordinates: while a record lies in the chunk they are
   * chunk indices; once a boundary cut it they index the carry, and #delta is
   * the coordinate of the chunk's first byte. #f.start is the record's start.
   */
  #delta = 0;
  #f: Fields = { rec: EMPTY, start: 0, end: 0, starts: [], ends: [], flags: [], count: 0, cap: MAX_HEADER_FIELDS };
  #recLine = 1;
  #state = FIELD;
  #flags = 0;
  #fieldStart = 0;
  #quoteAt = 0;
  /** #overflow: the record outgrew maxLineBytes and is being skipped to its end. */
  #overflow = false;
  #columns: Column[] | undefined;
  /** #values is scratch space for a record's decoded fields. */
  #values: string[] = [];

  constructor(maxLineBytes: number) {
    this.#maxLineBytes = maxLineBytes;
  }

  push(chunk: Buffer): void {
    this.#buf = chunk;
    this.#pos = 0;
    this.#delta = this.#carry.length;
  }

  end(): void {
    this.#ended = true;
  }

  next(): Draft | undefined {
    for (;;) {
      if (this.#pos < this.#buf.length) {
        const term = this.#scan();
        if (term >= 0) {
          const draft = this.#close(term, this.line - 1);
          if (draft) return draft;
        }
        continue;
      }
      // Keep what the chunk holds of the open record before the caller reuses or drops it.
      if (this.#buf !== EMPTY) this.#stash();
      if (!this.#ended || this.#done) return undefined;
      this.#done = true;
      return this.#finish();
    }
  }

  /** #scan reads up to the end of a record (returning its LF's index) or of the chunk (returning -1). */
  #scan(): number {
    const buf = this.#buf;
    const len = buf.length;
    const delta = this.#delta;
    const { starts, ends, flags: fieldFlags, cap } = this.#f;
    let i = this.#pos;
    let state = this.#state;
    let flags = this.#flags;
    let fieldStart = this.#fieldStart;
    let quoteAt = this.#quoteAt;
    let count = this.#f.count;
    let line = this.line;
    let term = -1;
    for (; i < len; i++) {
      const b = buf[i]!;
      if (state === BARE) {
        if (b === COMMA) {
          if (count < cap) {
            starts[count] = fieldStart;
            ends[count] = i + delta;
            fieldFlags[count] = flags;
          }
          count++;
          fieldStart = i + delta + 1;
          state = FIELD;
        } else if (b === LF) {
          term = i;
          break;
        } else if (b === QUOTE) flags |= F_STRAY;
      } else if (state === QUOTED) {
        if (b === QUOTE) {
          state = QUOTE_SEEN;
          quoteAt = i + delta;
        } else if (b === LF) line++;
      } else if (state === FIELD) {
        if (b === QUOTE) {
          state = QUOTED;
          flags = F_QUOTED;
          fieldStart = i + delta + 1;
        } else if (b === COMMA) {
          if (count < cap) {
            starts[count] = fieldStart;
            ends[count] = i + delta;
            fieldFlags[count] = 0;
          }
          count++;
          fieldStart = i + delta + 1;
        } else if (b === LF) {
          term = i;
          break;
        } else {
          state = BARE;
          flags = 0;
        }
      } else if (state === QUOTE_SEEN) {
        if (b === QUOTE) {
          state = QUOTED;
          flags |= F_ESCAPED;
        } else if (b === COMMA) {
          if (count < cap) {
            starts[count] = fieldStart;
            ends[count] = quoteAt;
            fieldFlags[count] = flags;
          }
          count++;
          fieldStart = i + delta + 1;
          state = FIELD;
        } else if (b === LF) {
          term = i;
          break;
        } else if (b === CR) state = QUOTE_CR;
        else {
          state = BARE;
          flags |= F_JUNK;
        }
      } else {
        // QUOTE_CR
        if (b === LF) {
          term = i;
          break;
        }
        // The CR was text after the closing quote; read this byte again as part of that text.
        state = BARE;
        flags |= F_JUNK;
        i--;
      }
    }
    this.#state = state;
    this.#flags = flags;
    this.#fieldStart = fieldStart;
    this.#quoteAt = quoteAt;
    this.#f.count = count;
    if (term >= 0) {
      this.#pos = term + 1;
      this.line = line + 1;
    } else {
      this.#pos = len;
      this.line = line;
    }
    return term;
  }

  /** #stash moves the open record's bytes from the finished chunk into the carry. */
  #stash(): void {
    const buf = this.#buf;
    if (!this.#overflow) {
      if (this.#carry.length === 0) {
        const from = this.#f.start;
        this.#carry.append(buf, from, buf.length);
        this.#rebase(-from);
      } else this.#carry.append(buf, 0, buf.length);
      if (this.#carry.length > this.#maxLineBytes) {
        this.#overflow = true;
        this.#carry.clear();
      }
    }
    this.#buf = EMPTY;
    this.#pos = 0;
  }

  #rebase(shift: number): void {
    const f = this.#f;
    f.start += shift;
    this.#fieldStart += shift;
    this.#quoteAt += shift;
    const n = Math.min(f.count, f.cap);
    for (let k = 0; k < n; k++) {
      f.starts[k]! += shift;
      f.ends[k]! += shift;
    }
  }

  /**
   * #close ends the record whose terminator (LF, or the end of the file) is at
   * chunk index term, and whose last physical line is lastLine.
   */
  #close(term: number, lastLine: number): Draft | undefined {
    const line = this.#recLine;
    const f = this.#f;
    f.end = term + this.#delta;
    let draft: Draft | undefined;
    if (this.#overflow || f.end - f.start > this.#maxLineBytes) {
      if (!this.#columns) throw new BulkFileError("MALFORMED_HEADER", line, `the header row is longer than ${this.#maxLineBytes} bytes`);
      draft = tooLong(line, this.#maxLineBytes);
    } else {
      f.rec = this.#buf;
      if (this.#carry.length > 0) {
        this.#carry.append(this.#buf, 0, term);
        f.rec = this.#carry.bytes;
      }
      const state = this.#state;
      if (state === FIELD) this.#field(this.#fieldStart, f.end, 0);
      else if (state === BARE) this.#field(this.#fieldStart, f.rec[f.end - 1] === CR ? f.end - 1 : f.end, this.#flags);
      else this.#field(this.#fieldStart, this.#quoteAt, this.#flags);
      if (isBlank(f)) draft = undefined;
      else if (this.#columns) draft = spanned(itemDraft(f, this.#columns, line, this.#values), lastLine);
      else {
        this.#columns = headerColumns(f, line);
        f.cap = this.#columns.length;
      }
    }
    this.#carry.clear();
    f.rec = EMPTY;
    this.#delta = 0;
    this.#overflow = false;
    this.#state = FIELD;
    f.count = 0;
    f.start = this.#fieldStart = term + 1;
    this.#recLine = this.line;
    return draft;
  }

  #field(start: number, end: number, flags: number): void {
    const f = this.#f;
    const k = f.count++;
    if (k < f.cap) {
      f.starts[k] = start;
      f.ends[k] = end;
      f.flags[k] = flags;
    }
  }

  /** #finish handles the end of the file: a last record without a line break, and an unclosed quote. */
  #finish(): Draft | undefined {
    this.#delta = this.#carry.length;
    if (this.#state === QUOTED) {
      const line = this.#recLine;
      if (!this.#columns) throw new BulkFileError("MALFORMED_HEADER", line, "a quoted column name is not closed");
      const f = this.#f;
      f.rec = this.#carry.bytes;
      f.end = this.#carry.length;
      // Too long to have been kept, its sku is unknown.
      // The line count has passed a line break that ends the file; the record's last line is the one before it.
      const last = this.#carry.length > 0 && this.#carry.bytes[this.#carry.length - 1] === LF ? this.line - 1 : this.line;
      return unclosedDraft(this.#overflow ? undefined : f, this.#columns, line, last);
    }
    const draft = this.#carry.length > 0 || this.#overflow ? this.#close(0, this.line) : undefined;
    if (draft) return draft;
    if (!this.#columns) throw new BulkFileError("EMPTY_FILE", this.line, "the file is empty: it has no header row");
    return undefined;
  }
}

/**
 * spanned names the physical lines of an invalid record that a quoted field
 * carried over line breaks (RFC 4180 allows it; an unbalanced quote makes it
 * swallow the lines after it): the report lists the record at its first
 * line, so its errors say which lines it took. A valid record that spans
 * lines (a quoted description with line breaks) is left as it is.
 */
function spanned(draft: Draft, lastLine: number): Draft {
  if (lastLine <= draft.line || draft.errors.length === 0) return draft;
  const where = `lines ${draft.line}–${lastLine} are one record (a quoted field runs over the line breaks; check for an unbalanced quote)`;
  return { ...draft, errors: draft.errors.map((e) => ({ ...e, message: `${where}: ${e.message}` })) };
}

/**
 * CsvRecordCounter counts a file's records by the scanner's own rules (a
 * quote opens a quoted field only at a field's start; an LF outside quotes
 * ends a record) without decoding a field: an upper bound on its items, as
 * blank records count too. Feed it the file without its BOM.
 */
export class CsvRecordCounter {
  #state = FIELD;
  /** #open: bytes of a record since its last LF (a last record without one still counts). */
  #open = false;
  #records = 0;

  push(buf: Uint8Array): void {
    let state = this.#state;
    let records = this.#records;
    const len = buf.length;
    for (let i = 0; i < len; i++) {
      const b = buf[i]!;
      if (state === QUOTED) {
        // Nothing but a quote matters inside a quoted field.
        const q = buf.indexOf(QUOTE, i);
        if (q === -1) break;
        i = q;
        state = QUOTE_SEEN;
      } else if (b === LF) {
        records++;
        state = FIELD;
      } else if (state === FIELD) {
        state = b === QUOTE ? QUOTED : b === COMMA ? FIELD : BARE;
      } else if (state === BARE) {
        if (b === COMMA) state = FIELD;
      } else if (state === QUOTE_SEEN) {
        state = b === QUOTE ? QUOTED : b === COMMA ? FIELD : b === CR ? QUOTE_CR : BARE;
      } else {
        // QUOTE_CR not followed by an LF: the CR was text, and so is this byte.
        state = b === COMMA ? FIELD : BARE;
      }
    }
    this.#state = state;
    this.#records = records;
    if (len > 0) this.#open = buf[len - 1] !== LF || state === QUOTED;
  }

  /** records counts the records so far, the last one whether or not an LF ended it. */
  get records(): number {
    return this.#records + (this.#open ? 1 : 0);
  }
}
