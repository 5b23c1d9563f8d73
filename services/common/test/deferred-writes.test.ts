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
