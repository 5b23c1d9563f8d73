/**
 * A faster COM_STMT_EXECUTE encoder for mysql2.
 *
 * Every prepared statement's execution goes through mysql2's
 * `Packets.Execute#toPacket`, which makes an object per bound value (its
 * type, length and writer), measures each string with Buffer.byteLength and
 * writes it with a native utf8Write. For insertRows' blocks (512 rows of
 * 10–16 columns: thousands of values, most of them short ASCII ids) that was
 * about a fifth of a bulk worker's CPU. encodeExecute writes the same bytes
 * in two plain passes over the values (sizes, then bytes): short strings
 * are copied in JavaScript while they are ASCII, the rest through Buffer.
 *
 * It takes only what it can encode exactly as mysql2 does (its test holds
 * it to mysql2's bytes): no query attributes, a UTF-8 connection, UTC dates
 * (`timezone: "Z"`, as createDatabase sets), no parameter types that mysql2
 * would narrow to an integer (MariaDB announces none), and values that are
 * null, strings, numbers, booleans, Dates or Buffers. Anything else (a
 * bigint, a JSON object, undefined, a Uint8Array that is not a Buffer)
 * returns undefined, and the caller uses mysql2's own encoder.
 */
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
/** mysql2's own modules, by path: its package exports do not name its packet classes. */
const mysql2Dir = path.dirname(require.resolve("mysql2"));

/** MySQL column types on the wire (mysql2/lib/constants/types.js). */
const TINY = 0x01;
const DOUBLE = 0x05;
const NULL = 0x06;
const DATETIME = 0x0c;
const BLOB = 0xfc;
const VAR_STRING = 0xfd;
const STMT_EXECUTE = 0x17;

/** Integer column types (tiny, short, long, longlong, int24, year) mysql2 may narrow a bound number to, from a parameter definition. */
const INTEGER_TYPES = new Set([0x01, 0x02, 0x03, 0x08, 0x09, 0x0d]);

/**
 * Strings up to this many UTF-16 units are copied in JavaScript while they
 * are ASCII, into room for their longest UTF-8 (3 bytes a unit: at most 249,
 * under 251, so their length always takes one byte).
 */
const SHORT = 83;

/** Per-value kinds of the first pass. */
const K_NULL = 0;
const K_STRING = 1;
const K_DOUBLE = 2;
const K_TINY = 3;
const K_DATE = 4;
const K_BLOB = 5;
const K_SHORT = 6;
/** Each kind's type on the wire, by kind. */
const WIRE_TYPE = [NULL, VAR_STRING, DOUBLE, TINY, DATETIME, BLOB, VAR_STRING];

function lengthCodedSize(n: number): number {
  return n < 0xfb ? 1 : n < 0xffff ? 3 : n < 0xffffff ? 4 : 9;
}

function writeLengthCoded(buf: Buffer, o: number, n: number): number {
  if (n < 0xfb) {
    buf[o] = n;
    return o + 1;
  }
  if (n < 0xffff) {
    buf[o] = 0xfc;
    buf.writeUInt16LE(n, o + 1);
    return o + 3;
  }
  if (n < 0xffffff) {
    buf[o] = 0xfd;
    buf.writeUIntLE(n, o + 1, 3);
    return o + 4;
  }
  buf[o] = 0xfe;
  buf.writeUInt32LE(n >>> 0, o + 1);
  buf.writeUInt32LE(Math.floor(n / 0x100000000), o + 5);
  return o + 9;
}

/** Reused between calls: one kind and one byte length per value. */
let kinds = new Uint8Array(1024);
let sizes = new Int32Array(1024);

/**
 * encodeExecute builds the COM_STMT_EXECUTE packet (4-byte header with
 * sequence id 0 and the length left for mysql2 to fill, as toPacket leaves
 * it) of statement `id` with `values`, or undefined where it does not take
 * the values (see the module comment).
 */
export function encodeExecute(id: number, values: readonly unknown[]): Buffer | undefined {
  const n = values.length;
  if (kinds.length < n) {
    kinds = new Uint8Array(n * 2);
    sizes = new Int32Array(n * 2);
  }
  // 4 header + command + id (4) + flags + iteration count (4); then null bitmap, bound flag, 2 type bytes per value.
  let length = 14;
  if (n > 0) length += ((n + 7) >> 3) + 1 + n * 2;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    switch (typeof v) {
      case "string": {
        if (v.length <= SHORT) {
          kinds[i] = K_SHORT;
          length += 1 + 3 * v.length;
        } else {
          const bytes = Buffer.byteLength(v, "utf8");
          kinds[i] = K_STRING;
          sizes[i] = bytes;
          length += lengthCodedSize(bytes) + bytes;
        }
        break;
      }
      case "number":
        kinds[i] = K_DOUBLE;
        length += 8;
        break;
      case "boolean":
        kinds[i] = K_TINY;
        length += 1;
        break;
      case "object":
        if (v === null) {
          kinds[i] = K_NULL;
        } else if (Object.prototype.toString.call(v) === "[object Date]") {
          // mysql2 refuses a year outside 0–65535 (writeUInt16LE) and writes an invalid date as zeros: its own encoder does that.
          const year = (v as Date).getUTCFullYear();
          if (!(year >= 0 && year <= 0xffff)) return undefined;
          kinds[i] = K_DATE;
          length += 12;
        } else if (Buffer.isBuffer(v)) {
          kinds[i] = K_BLOB;
          sizes[i] = v.length;
          length += lengthCodedSize(v.length) + v.length;
        } else {
          return undefined;
        }
        break;
      default:
        return undefined;
    }
  }

  const buf = Buffer.allocUnsafe(length);
  buf.writeUInt32LE(0, 0);
  buf[4] = STMT_EXECUTE;
  buf.writeUInt32LE(id >>> 0, 5);
  buf[9] = 0; // no cursor
  buf.writeUInt32LE(1, 10); // iteration count
  let o = 14;
  if (n > 0) {
    let bitmap = 0;
    let bit = 1;
    for (let i = 0; i < n; i++) {
      if (kinds[i] === K_NULL) bitmap |= bit;
      bit <<= 1;
      if (bit === 256) {
        buf[o++] = bitmap;
        bitmap = 0;
        bit = 1;
      }
    }
    if (bit !== 1) buf[o++] = bitmap;
    buf[o++] = 1; // new params bound
    for (let i = 0; i < n; i++) {
      buf[o++] = WIRE_TYPE[kinds[i]!]!;
      buf[o++] = 0;
    }
  }
  for (let i = 0; i < n; i++) {
    const v = values[i];
    switch (kinds[i]) {
      case K_SHORT: {
        const s = v as string;
        const len = s.length;
        const at = o + 1;
        let j = 0;
        for (; j < len; j++) {
          const c = s.charCodeAt(j);
          if (c > 0x7f) break;
          buf[at + j] = c;
        }
        // Not ASCII after all: Buffer writes it whole (at most 3 * len bytes, the room it has).
        const bytes = j === len ? len : buf.write(s, at, 3 * len, "utf8");
        buf[o] = bytes;
        o = at + bytes;
        break;
      }
      case K_STRING: {
        const len = sizes[i]!;
        o = writeLengthCoded(buf, o, len);
        buf.write(v as string, o, len, "utf8");
        o += len;
        break;
      }
      case K_DOUBLE:
        buf.writeDoubleLE(v as number, o);
        o += 8;
        break;
      case K_TINY:
        buf[o++] = (v as boolean) ? 1 : 0;
        break;
      case K_DATE: {
        const d = v as Date;
        buf[o] = 11;
        buf.writeUInt16LE(d.getUTCFullYear(), o + 1);
        buf[o + 3] = d.getUTCMonth() + 1;
        buf[o + 4] = d.getUTCDate();
        buf[o + 5] = d.getUTCHours();
        buf[o + 6] = d.getUTCMinutes();
        buf[o + 7] = d.getUTCSeconds();
        buf.writeUInt32LE(d.getUTCMilliseconds() * 1000, o + 8);
        o += 12;
        break;
      }
      case K_BLOB: {
        const b = v as Buffer;
        o = writeLengthCoded(buf, o, b.length);
        b.copy(buf, o);
        o += b.length;
        break;
      }
    }
  }
  if (o > length) throw new Error(`COM_STMT_EXECUTE: wrote ${o} bytes into ${length}`);
  // Short strings had room for 3 bytes a unit: the packet is what was written.
  return o === length ? buf : buf.subarray(0, o);
}

/** mysql2's Execute packet as its prototype sees it. */
interface ExecutePacket {
  id: number;
  parameters: unknown[] | undefined;
  encoding: string;
  timezone: string;
  attributes: Record<string, unknown> | undefined;
  clientFlags: number;
  parameterDefinitions: { columnType: number }[] | undefined;
}

const CLIENT_QUERY_ATTRIBUTES = 0x08000000;

/** noIntegerHints remembers, per statement's parameter definitions, that none names an integer type. */
const noIntegerHints = new WeakMap<object, boolean>();

function withoutIntegerHints(definitions: { columnType: number }[] | undefined): boolean {
  if (!definitions || definitions.length === 0) return true;
  let none = noIntegerHints.get(definitions);
  if (none === undefined) {
    none = definitions.every((d) => !INTEGER_TYPES.has(d.columnType));
    noIntegerHints.set(definitions, none);
  }
  return none;
}

let installed = false;

/**
 * useFastExecutePackets makes mysql2 encode prepared statements' executions
 * with encodeExecute where it takes them (once per process; createDatabase
 * calls it).
 */
export function useFastExecutePackets(): void {
  if (installed) return;
  installed = true;
  const Execute = require(path.join(mysql2Dir, "lib", "packets", "execute.js")) as {
    prototype: { toPacket(this: ExecutePacket): unknown };
  };
  const Packet = require(path.join(mysql2Dir, "lib", "packets", "packet.js")) as new (
    id: number,
    buffer: Buffer,
    start: number,
    end: number,
  ) => { offset: number };
  const original = Execute.prototype.toPacket;
  Execute.prototype.toPacket = function toPacket(this: ExecutePacket) {
    if (
      (this.encoding === "utf8" || this.encoding === "utf-8") &&
      this.timezone === "Z" &&
      (this.clientFlags & CLIENT_QUERY_ATTRIBUTES) === 0 &&
      withoutIntegerHints(this.parameterDefinitions)
    ) {
      const buffer = encodeExecute(this.id, this.parameters ?? []);
      if (buffer) {
        const packet = new Packet(0, buffer, 0, buffer.length);
        packet.offset = buffer.length; // where mysql2's own encoder leaves it
        return packet;
      }
    }
    return original.call(this);
  };
}
