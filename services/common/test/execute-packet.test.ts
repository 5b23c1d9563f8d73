/**
 * The COM_STMT_EXECUTE encoder (execute-packet.ts) against mysql2's own:
 * byte for byte over values that cross the encoding's edges (length-coded
 * sizes of 1, 3, 4 and 9 bytes, ASCII strings either side of the short
 * path's 83 units, multi-byte and astral UTF-8, the null bitmap's byte
 * boundaries, dates, doubles, booleans, buffers), the values it leaves to
 * mysql2, and a round trip through MariaDB.
 */
import { createRequire } from "node:module";
import path from "node:path";
import test from "ava";
import { sql } from "kysely";
import { createDatabase, ensureDatabase } from "../src/db/database.ts";
import { executeBinary } from "../src/db/deferred-writes.ts";
import { encodeExecute, useFastExecutePackets } from "../src/db/execute-packet.ts";
import { testDatabaseUrl, dropTestDatabase } from "../testing/index.ts";

const require = createRequire(import.meta.url);
type Packet = { buffer: Buffer; offset: number; length(): number };
const Execute = require(path.join(path.dirname(require.resolve("mysql2")), "lib", "packets", "execute.js")) as {
  new (
    id: number,
    parameters: unknown[],
    charsetNumber: number,
    timezone: string,
    attributes: undefined,
    clientFlags: number,
    jsonAsString: boolean,
    parameterDefinitions: { columnType: number; flags: number }[],
  ): { toPacket(): Packet };
  prototype: { toPacket(): Packet };
};
// mysql2's encoder, taken before anything installs the fast one (each test file runs in its own process).
const mysql2ToPacket = Execute.prototype.toPacket;
const UTF8MB4 = 45;
const mysql2Bytes = (id: number, values: unknown[], definitions: { columnType: number; flags: number }[] = []) =>
  mysql2ToPacket.call(new Execute(id, values, UTF8MB4, "Z", undefined, 0, true, definitions)).buffer.subarray(4);

const strings = [
  "",
  "a",
  "01JMERCHANT0000000000000000",
  "x".repeat(64),
  "x".repeat(65),
  "x".repeat(83),
  "x".repeat(84),
  `${"x".repeat(82)}é`,
  `é${"x".repeat(82)}`,
  "é".repeat(83),
  "🛒".repeat(41),
  `${"🛒".repeat(41)}x`,
  "\uD800".repeat(83),
  "\uDC00".repeat(84),
  "é",
  `${"x".repeat(63)}é`,
  "späti — 売り切れ 🛒",
  "\u{1F6D2}".repeat(40),
  "x".repeat(250),
  "x".repeat(251),
  "x".repeat(252),
  `${"é".repeat(125)}x`,
  "y".repeat(65_534),
  "y".repeat(65_535),
  "y".repeat(65_536),
  "z".repeat(70_000),
  "line\nbreak 'q' \"d\" \\ \u0000 nul",
];
const numbers = [0, -0, 1, -1, 0.5, 1e300, -1e-300, 2 ** 53, 2 ** 53 + 2, -(2 ** 60), Number.NaN, Number.POSITIVE_INFINITY, 1299];
const dates = [
  new Date(Date.UTC(2026, 11, 4, 23, 59, 58, 123)),
  new Date(0),
  new Date(Date.UTC(1, 0, 1)),
  new Date(Date.UTC(9999, 11, 31, 23, 59, 59, 999)),
  new Date(Date.UTC(60_000, 0, 1)),
];
const buffers = [Buffer.alloc(0), Buffer.from([0, 39, 92, 255]), Buffer.alloc(250, 1), Buffer.alloc(251, 2), Buffer.alloc(70_000, 3)];
const values: unknown[] = [null, true, false, ...strings, ...numbers, ...dates, ...buffers];

/** same compares bytes without ava diffing megabytes: the first offset where they differ, or -1. */
function firstDifference(a: Buffer, b: Buffer): number {
  if (a.equals(b)) return -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i;
  return Math.min(a.length, b.length);
}

/** A deterministic generator, so a failure names a case that runs again. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1_103_515_245 + 12_345) >>> 0;
    return s / 2 ** 32;
  };
}

test("it writes mysql2's bytes for every kind of value it takes, one by one and mixed", (t) => {
  const id = 0x01020304;
  for (const v of values)
    t.is(firstDifference(encodeExecute(id, [v])!.subarray(4), mysql2Bytes(id, [v])), -1, `value ${String(v).slice(0, 30)}`);
  // The null bitmap across byte boundaries, and the statement id's full range.
  for (const n of [0, 1, 7, 8, 9, 15, 16, 17, 64]) {
    const mixed = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? null : values[i % values.length]));
    t.is(firstDifference(encodeExecute(0xffffffff, mixed)!.subarray(4), mysql2Bytes(0xffffffff, mixed)), -1, `${n} values`);
    // A lone null at each position, and all null: each bit of the bitmap.
    for (let p = 0; p < n; p++) {
      const one = Array.from({ length: n }, (_, i) => (i === p ? null : "v"));
      t.is(firstDifference(encodeExecute(3, one)!.subarray(4), mysql2Bytes(3, one)), -1, `${n} values, null at ${p}`);
    }
    const nulls = new Array<null>(n).fill(null);
    t.is(firstDifference(encodeExecute(3, nulls)!.subarray(4), mysql2Bytes(3, nulls)), -1, `${n} nulls`);
  }
  const next = rng(42);
  for (let round = 0; round < 50; round++) {
    const list = Array.from({ length: 1 + Math.floor(next() * 300) }, () => values[Math.floor(next() * values.length)]);
    t.is(firstDifference(encodeExecute(7, list)!.subarray(4), mysql2Bytes(7, list)), -1, `round ${round}`);
  }
  // A string of 16 MiB - 1 bytes and more: a 9-byte length.
  const huge = "h".repeat(16_777_216);
  t.is(firstDifference(encodeExecute(1, [huge, 1])!.subarray(4), mysql2Bytes(1, [huge, 1])), -1);
});

test("it leaves to mysql2 what it does not encode exactly as mysql2 does", (t) => {
  for (const v of [
    undefined,
    12n,
    { a: 1 },
    [1, 2],
    new Uint8Array([1, 2]),
    new Date(Number.NaN),
    new Date(Date.UTC(70_000, 0, 1)),
    Symbol("s"),
  ]) {
    t.is(encodeExecute(1, ["a", v, 3]), undefined, String(typeof v));
  }
});

test("installed, mysql2 packets carry the same bytes, and mysql2 still encodes what the fast path leaves", (t) => {
  useFastExecutePackets();
  t.not(Execute.prototype.toPacket, mysql2ToPacket);
  const packetOf = (list: unknown[], definitions: { columnType: number; flags: number }[] = []) =>
    new Execute(9, list, UTF8MB4, "Z", undefined, 0, true, definitions).toPacket();
  const list = [null, "a", 1.5, new Date(0), Buffer.from([1]), true];
  const fast = packetOf(list);
  t.deepEqual(fast.buffer.subarray(4), mysql2Bytes(9, list));
  t.is(fast.length(), fast.buffer.length);
  t.is(fast.offset, fast.buffer.length);
  // mysql2 narrows numbers to integers where a parameter definition names an integer type (MySQL 8 announces them).
  const LONGLONG = 0x08;
  const hinted = [{ columnType: LONGLONG, flags: 0 }];
  t.deepEqual(packetOf([5], hinted).buffer.subarray(4), mysql2Bytes(9, [5], hinted));
  t.notDeepEqual(mysql2Bytes(9, [5], hinted), mysql2Bytes(9, [5]));
  t.deepEqual(packetOf([12n, { a: 1 }]).buffer.subarray(4), mysql2Bytes(9, [12n, { a: 1 }]));
  t.throws(() => packetOf([undefined]), { instanceOf: TypeError });
});

test("values written through the fast path read back as the text protocol stores them", async (t) => {
  const url = testDatabaseUrl("common_execute_packet");
  await ensureDatabase(url);
  const db = createDatabase<any>({ url, poolSize: 1 });
  try {
    await sql`create table v (k varchar(8) not null, id int not null, s mediumtext, n double, d datetime(3), b mediumblob, f tinyint,
      primary key (k, id))`.execute(db);
    const rows = strings.map(
      (s, i) => [i, s, numbers[i % numbers.length]!, dates[i % 4]!, buffers[i % buffers.length]!, i % 2 === 0] as const,
    );
    const finite = (n: number) => (Number.isFinite(n) ? n : null);
    for (const [i, s, n, d, b, f] of rows) {
      await executeBinary(db, { sql: "insert into v values ('bin', ?, ?, ?, ?, ?, ?)", parameters: [i, s, finite(n), d, b, f] });
      await sql`insert into v values ('text', ${i}, ${s}, ${finite(n)}, ${d}, ${b}, ${f})`.execute(db);
    }
    const read = async (k: string) => (await sql`select id, s, n, d, hex(b) b, f from v where k = ${k} order by id`.execute(db)).rows;
    const [binary, text] = [await read("bin"), await read("text")];
    t.is(binary.length, strings.length);
    t.deepEqual(binary, text);
  } finally {
    await db.destroy();
    await dropTestDatabase(url);
  }
});
