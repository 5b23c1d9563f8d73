import test from "ava";
import { sql } from "kysely";
import { createDatabase, ensureDatabase, inTransaction, insertRows, mysqlErrno, ER_DUP_ENTRY } from "../src/db/database.ts";
import { deferWrite } from "../src/db/deferred-writes.ts";
import { testDatabaseUrl, dropTestDatabase } from "../testing/index.ts";

// Real MariaDB; this file's own database.
const url = testDatabaseUrl("common_deferred");
await ensureDatabase(url);
const seen: string[] = [];
const db = createDatabase<any>({ url, poolSize: 2, observe: (text) => seen.push(text) });
await sql`create table t (merchant_id varchar(26) not null, id int not null, note varchar(8) not null default '', primary key (merchant_id, id))`.execute(
  db,
);
test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

const ids = async (merchant: string) =>
  (await db.selectFrom("t").select("id").where("merchant_id", "=", merchant).orderBy("id").execute()).map((r) => r.id as number);

test.serial("deferred writes commit with the transaction, in order, and a later read in it sees them", async (t) => {
  seen.length = 0;
  const inside = await inTransaction(db, async (trx) => {
    await insertRows(trx, "t", [{ merchant_id: "a", id: 1 }], { deferred: true });
    await deferWrite(trx, trx.updateTable("t").set({ note: "x" }).where("merchant_id", "=", "a").where("id", "=", 1).compile());
    await insertRows(trx, "t", [{ merchant_id: "a", id: 2 }], { deferred: true });
    return trx.selectFrom("t").select(["id", "note"]).where("merchant_id", "=", "a").orderBy("id").execute();
  });
  t.deepEqual(inside, [
    { id: 1, note: "x" },
    { id: 2, note: "" },
  ]);
  // Observers see each statement once, as written, without the deferral marker.
  t.deepEqual(
    seen.map((s) => s.split(" ").slice(0, 3).join(" ")),
    ["begin", "insert into `t`", "update `t` set", "insert into `t`", "select `id`, `note`", "commit"],
  );
  t.deepEqual(await ids("a"), [1, 2]);
});

test.serial("a failing deferred write fails the COMMIT it rode with: nothing of the transaction stays", async (t) => {
  await insertRows(db, "t", [{ merchant_id: "b", id: 1 }]);
  const error = await t.throwsAsync(
    inTransaction(db, async (trx) => {
      await insertRows(trx, "t", [{ merchant_id: "b", id: 2 }]);
      await insertRows(trx, "t", [{ merchant_id: "b", id: 3 }], { deferred: true });
      await insertRows(trx, "t", [{ merchant_id: "b", id: 1 }], { deferred: true }); // duplicate key
      await insertRows(trx, "t", [{ merchant_id: "b", id: 4 }], { deferred: true });
    }),
  );
  t.is(mysqlErrno(error), ER_DUP_ENTRY);
  t.deepEqual(await ids("b"), [1]);
});

test.serial("a rolled-back transaction's queued writes are never sent, and the connection is clean for the next caller", async (t) => {
  await t.throwsAsync(
    inTransaction(db, async (trx) => {
      await insertRows(trx, "t", [{ merchant_id: "c", id: 1 }], { deferred: true });
      throw new Error("changed my mind");
    }),
    { message: "changed my mind" },
  );
  // Both pool connections serve transactions again; neither carries the abandoned write.
  await Promise.all([1, 2].map((id) => inTransaction(db, (trx) => insertRows(trx, "t", [{ merchant_id: "c", id: 10 + id }]))));
  t.deepEqual(await ids("c"), [11, 12]);
});

test.serial("outside a transaction a deferred write runs at once", async (t) => {
  await insertRows(db, "t", [{ merchant_id: "d", id: 1 }], { deferred: true });
  t.deepEqual(await ids("d"), [1]);
});

test.serial("many concurrent transactions with deferred writes each commit all of theirs", async (t) => {
  await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      inTransaction(db, async (trx) => {
        await insertRows(trx, "t", [{ merchant_id: "e", id: i }]);
        await insertRows(trx, "t", [{ merchant_id: "e", id: 1000 + i }], { deferred: true });
        await insertRows(trx, "t", [{ merchant_id: "e", id: 2000 + i }], { deferred: true });
      }),
    ),
  );
  t.is((await ids("e")).length, 120);
});

test.serial(
  "many rows go as prepared-statement blocks and the rest as text: every value is stored as the text protocol stores it",
  async (t) => {
    await sql`create table typed (
    k varchar(16) not null, id int not null, n bigint, s varchar(64), j json, d datetime(3), b varbinary(64), f tinyint, x text,
    primary key (k, id))`.execute(db);
    const at = new Date(Date.UTC(2026, 11, 3, 23, 59, 58, 123));
    const row = (k: string, id: number) => ({
      k,
      id,
      n: id % 3 === 0 ? null : 9_007_199_254_740_000 + id,
      s: `été ✓ 'q' "d" \\ ${id}`,
      j: JSON.stringify({ id, name: "ünï", nested: [1, "two"] }),
      d: at,
      // A bare Uint8Array (what protobuf-es encodes to) is stored as bytes on both protocols, like a Buffer.
      b: id % 2 === 0 ? Buffer.from([0, 39, 92, 255, id % 256]) : new Uint8Array([0, 39, 92, 255, id % 256]),
      f: id % 2 === 0,
      x: id % 5 === 0 ? "" : `line\nbreak ${id}`,
    });
    // 1,000 rows: blocks of 512, 256, 128 and 64, then 40 as text, deferred; the duplicate-key update goes through both.
    seen.length = 0;
    await inTransaction(db, async (trx) => {
      await insertRows(trx, "typed", [row("first", 0)], { deferred: true });
      await insertRows(
        trx,
        "typed",
        Array.from({ length: 1000 }, (_, i) => row("binary", i)),
        { deferred: true, onDuplicateKeyUpdate: ["s"] },
      );
    });
    const shapes = seen.filter((s) => s.startsWith("insert into `typed`")).map((s) => (s.match(/\(\?/g) ?? []).length);
    const text = Array.from({ length: 1000 }, (_, i) => row("text", i));
    for (let i = 0; i < text.length; i += 63) await insertRows(db, "typed", text.slice(i, i + 63), { onDuplicateKeyUpdate: ["s"] });
    const read = async (k: string) =>
      (await sql<Record<string, unknown>>`select id, n, s, j, d, hex(b) b, f, x from typed where k = ${k} order by id`.execute(db)).rows;
    const [binary, texts] = [await read("binary"), await read("text")];
    t.is(binary.length, 1000);
    t.deepEqual(binary, texts);
    t.deepEqual(binary[4], {
      id: 4,
      n: 9_007_199_254_740_004,
      s: `été ✓ 'q' "d" \\ 4`,
      j: { id: 4, name: "ünï", nested: [1, "two"] },
      d: at,
      b: "00275CFF04",
      f: 1,
      x: "line\nbreak 4",
    });
    // The deferred row went first, with the BEGIN, in its own round trip before the first block.
    t.deepEqual((await read("first")).length, 1);
    t.deepEqual(shapes, [1, 512, 256, 128, 64, 40]);
    // A row with a large binary value goes as a prepared statement as well, whole.
    const big = Buffer.alloc(200_000, 7);
    big.write("end", big.length - 3);
    await sql`alter table typed modify b mediumblob`.execute(db);
    await inTransaction(db, (trx) => insertRows(trx, "typed", [{ ...row("blob", 1), b: big }], { deferred: true }));
    const [stored] = (await sql<{ b: Buffer }>`select b from typed where k = 'blob'`.execute(db)).rows;
    t.true(Buffer.compare(stored!.b, big) === 0);
    // And a block's failure fails the transaction: nothing of it stays.
    await t.throwsAsync(
      inTransaction(db, async (trx) => {
        await insertRows(trx, "typed", [row("fail", 600)]);
        await insertRows(
          trx,
          "typed",
          Array.from({ length: 700 }, (_, i) => row("fail", i)),
        );
      }),
    );
    t.deepEqual(await read("fail"), []);
  },
);
