/**
 * encodeProductEvent writes a stockroom.catalog.v1.ProductEvent straight
 * from a domain product, with the bytes protobuf-es's toBinary gives for
 * create(ProductEventSchema, { ..., product: productToProto(p) }): fields in
 * number order, proto3 defaults left out, map entries with key and value.
 *
 * Every bulk item and every order line writes one such event, and the
 * generic path (build the message objects, then a reflective writer that
 * forks a buffer per nested message) was about an eighth of a bulk
 * worker's CPU. Here the sizes are added up first and the event is written
 * into one buffer of exactly that size.
 *
 * event-codec.test.ts holds it to toBinary: byte for byte over varied
 * products, and field by field against the schema, so a field added to
 * Product, Money, ChangeSource, Timestamp or ProductEvent fails the test
 * until it is written here too.
 */
import type { Product } from "./domain.ts";

export interface ProductEventFields {
  eventId: string;
  merchantId: string;
  /** stockroom.catalog.v1.ChangeType */
  type: number;
  product: Product;
  changedFields: readonly string[];
  /** stockroom.catalog.v1.ChangeSourceKind */
  sourceKind: number;
  sourceRef: string;
  occurTime: Date;
}

/** ProductStatus numbers of stockroom.catalog.v1.ProductStatus. */
const STATUS: Record<Product["status"], number> = { active: 1, draft: 2, archived: 3 };

const LEN = 2; // wire type: length-delimited
const VARINT = 0;
const tag = (field: number, wire: number) => (field << 3) | wire;

/** Bytes of a varint holding n: a non-negative integer up to 2^53, or a negative int32/int64 (ten bytes, two's complement). */
function varintSize(n: number): number {
  if (n < 0) return 10;
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/** Bytes of a length-delimited field whose tag takes one byte (fields 1-15). */
const delimited = (bytes: number) => 1 + varintSize(bytes) + bytes;
/**
 * SHORT: strings up to this length are measured and copied in JavaScript when
 * they are ASCII (ids, SKUs, field names, most titles): a call into
 * Buffer.byteLength and Buffer.write per string cost more than the bytes.
 */
const SHORT = 64;

/** strBytes is the UTF-8 length of s; a short ASCII string's is its length. */
function strBytes(s: string): number {
  const n = s.length;
  if (n > SHORT) return Buffer.byteLength(s, "utf8");
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s, "utf8");
  return n;
}

class Out {
  pos = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  varint(n: number): void {
    const buf = this.buf;
    if (n < 0) {
      // Two's complement over 64 bits, as int32 and int64 fields carry a negative number: always ten bytes.
      let u = BigInt.asUintN(64, BigInt(n));
      for (let i = 0; i < 9; i++) {
        buf[this.pos++] = Number(u & 0x7fn) | 0x80;
        u >>= 7n;
      }
      buf[this.pos++] = Number(u);
      return;
    }
    while (n >= 128) {
      buf[this.pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    buf[this.pos++] = n;
  }
  /** A length-delimited string field of byteLength bytes, written even when empty (a map entry's key and value, a repeated element). */
  text(field: number, s: string, byteLength: number): void {
    this.varint(tag(field, LEN));
    this.varint(byteLength);
    // byteLength === length: every character is ASCII, one byte each.
    if (byteLength === s.length && byteLength <= SHORT) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < byteLength; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else this.pos += this.buf.write(s, this.pos, byteLength, "utf8");
  }
  /** A singular string field: left out when empty, as proto3 leaves a default. */
  string(field: number, s: string, byteLength: number): void {
    if (byteLength > 0) this.text(field, s, byteLength);
  }
  /** A varint field (left out when 0). */
  number(field: number, n: number): void {
    if (n === 0) return;
    this.varint(tag(field, VARINT));
    this.varint(n);
  }
  /** The start of a nested message of `bytes` bytes. */
  open(field: number, bytes: number): void {
    this.varint(tag(field, LEN));
    this.varint(bytes);
  }
}

interface TimestampParts {
  seconds: number;
  nanos: number;
  bytes: number;
}

/** As timestampFromDate: whole seconds (floored) and the milliseconds left as nanos. */
function timestamp(d: Date): TimestampParts {
  const ms = d.getTime();
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms - seconds * 1000) * 1_000_000;
  const bytes = (seconds === 0 ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
  return { seconds, nanos, bytes };
}

function writeTimestamp(out: Out, field: number, t: TimestampParts): void {
  out.open(field, t.bytes);
  out.number(1, t.seconds);
  out.number(2, t.nanos);
}

/** Money { currency_code = 1; minor_units = 2 }. */
const moneyBytes = (currencyBytes: number, minor: number) =>
  (currencyBytes === 0 ? 0 : delimited(currencyBytes)) + (minor === 0 ? 0 : 1 + varintSize(minor));

function writeMoney(out: Out, field: number, currency: string, currencyBytes: number, minor: number): void {
  out.open(field, moneyBytes(currencyBytes, minor));
  out.string(1, currency, currencyBytes);
  out.number(2, minor);
}

export function encodeProductEvent(e: ProductEventFields): Buffer {
  const p = e.product;
  // Product's strings and nested messages, measured once.
  const id = strBytes(p.id);
  const sku = strBytes(p.sku);
  const title = strBytes(p.title);
  const description = strBytes(p.description);
  const currency = strBytes(p.currency);
  const etag = `${p.id}.${p.version}`;
  const etagLen = strBytes(etag);
  const gtin = strBytes(p.gtin);
  const brand = strBytes(p.brand);
  const price = moneyBytes(currency, p.priceMinor);
  const compareAt = p.compareAtMinor === null ? -1 : moneyBytes(currency, p.compareAtMinor);
  const created = timestamp(p.createdAt);
  const updated = timestamp(p.updatedAt);
  const attributeKeys = Object.keys(p.attributes);
  const attributeSizes: number[] = new Array(attributeKeys.length * 3);
  let attributes = 0;
  for (let i = 0; i < attributeKeys.length; i++) {
    const k = strBytes(attributeKeys[i]!);
    const v = strBytes(p.attributes[attributeKeys[i]!]!);
    // An entry always carries its key (1) and value (2), empty or not.
    const entry = 1 + varintSize(k) + k + 1 + varintSize(v) + v;
    attributeSizes[i * 3] = k;
    attributeSizes[i * 3 + 1] = v;
    attributeSizes[i * 3 + 2] = entry;
    attributes += delimited(entry);
  }
  const status = STATUS[p.status];
  const product =
    (id === 0 ? 0 : delimited(id)) +
    (sku === 0 ? 0 : delimited(sku)) +
    (title === 0 ? 0 : delimited(title)) +
    (description === 0 ? 0 : delimited(description)) +
    delimited(price) +
    (p.stock === 0 ? 0 : 1 + varintSize(p.stock)) +
    (status === 0 ? 0 : 1 + varintSize(status)) +
    attributes +
    (p.version === 0 ? 0 : 1 + varintSize(p.version)) +
    delimited(etagLen) +
    delimited(created.bytes) +
    delimited(updated.bytes) +
    (gtin === 0 ? 0 : delimited(gtin)) +
    (brand === 0 ? 0 : delimited(brand)) +
    (compareAt < 0 ? 0 : delimited(compareAt)) +
    (p.weightGrams === null ? 0 : 2 + varintSize(p.weightGrams));

  const eventId = strBytes(e.eventId);
  const merchantId = strBytes(e.merchantId);
  const changed = e.changedFields.map(strBytes);
  const sourceRef = strBytes(e.sourceRef);
  const source = (e.sourceKind === 0 ? 0 : 1 + varintSize(e.sourceKind)) + (sourceRef === 0 ? 0 : delimited(sourceRef));
  const occur = timestamp(e.occurTime);
  let total =
    (eventId === 0 ? 0 : delimited(eventId)) +
    (merchantId === 0 ? 0 : delimited(merchantId)) +
    (e.type === 0 ? 0 : 1 + varintSize(e.type)) +
    delimited(product) +
    delimited(source) +
    delimited(occur.bytes);
  for (const n of changed) total += delimited(n);

  const out = new Out(Buffer.allocUnsafe(total));
  out.string(1, e.eventId, eventId);
  out.string(2, e.merchantId, merchantId);
  out.number(3, e.type);

  out.open(4, product);
  out.string(1, p.id, id);
  out.string(2, p.sku, sku);
  out.string(3, p.title, title);
  out.string(4, p.description, description);
  writeMoney(out, 5, p.currency, currency, p.priceMinor);
  out.number(6, p.stock);
  out.number(7, status);
  for (let i = 0; i < attributeKeys.length; i++) {
    out.open(8, attributeSizes[i * 3 + 2]!);
    out.text(1, attributeKeys[i]!, attributeSizes[i * 3]!);
    out.text(2, p.attributes[attributeKeys[i]!]!, attributeSizes[i * 3 + 1]!);
  }
  out.number(9, p.version);
  out.string(10, etag, etagLen);
  writeTimestamp(out, 11, created);
  writeTimestamp(out, 12, updated);
  out.string(13, p.gtin, gtin);
  out.string(14, p.brand, brand);
  if (p.compareAtMinor !== null) writeMoney(out, 15, p.currency, currency, p.compareAtMinor);
  if (p.weightGrams !== null) {
    out.varint(tag(16, VARINT));
    out.varint(p.weightGrams);
  }

  for (let i = 0; i < changed.length; i++) out.text(5, e.changedFields[i]!, changed[i]!);
  out.open(6, source);
  out.number(1, e.sourceKind);
  out.string(2, e.sourceRef, sourceRef);
  writeTimestamp(out, 7, occur);
  if (out.pos !== total) throw new Error(`encodeProductEvent: wrote ${out.pos} bytes of ${total}`);
  return out.buf;
}
