/**
 * alterTableOnline on the real server: a change runs as INSTANT or as
 * NOCOPY with LOCK=NONE, or is refused and leaves the table as it was.
 * Besides the algorithm it reports, each test checks InnoDB's table id, which
 * a table copy (ALGORITHM=COPY, or a rebuild) replaces.
 */
import test, { type ExecutionContext } from "ava";
import { sql, type Kysely } from "kysely";
import { alterTableOnline, createDatabase, ensureDatabase, mysqlErrno, OnlineAlterRefusedError } from "../src/db/database.ts";
import { dropTestDatabase, testDatabaseUrl } from "../testing/index.ts";

let db: Kysely<any>;
let url: string;

test.before(async () => {
  url = testDatabaseUrl("online_alter");
  await ensureDatabase(url);
  db = createDatabase({ url, poolSize: 2 });
});

test.after.always(async () => {
  await db?.destroy();
  if (url) await dropTestDatabase(url);
});

/** table creates a table of 1,000 rows under a name of its own test. */
async function table(name: string, extra = ""): Promise<string> {
  await sql
    .raw(`CREATE TABLE ${name} (
      merchant_id VARCHAR(26) NOT NULL,
      sku VARCHAR(128) NOT NULL,
      qty INT NOT NULL,
      title VARCHAR(200) NOT NULL${extra},
      PRIMARY KEY (merchant_id, sku)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`)
    .execute(db);
  await sql
    .raw(
      `INSERT INTO ${name} (merchant_id, sku, qty, title) SELECT 'M1', CONCAT('SKU-', seq), seq, CONCAT('Product ', seq) FROM seq_1_to_1000`,
    )
    .execute(db);
  return name;
}

/** shape is what would show a change: the table's definition and InnoDB's id for it (new after a copy or rebuild). */
async function shape(name: string): Promise<{ create: string; tableId: number }> {
  const create = (await sql.raw<{ "Create Table": string }>(`SHOW CREATE TABLE ${name}`).execute(db)).rows[0]!["Create Table"];
  const { rows } = await sql<{ id: number }>`SELECT TABLE_ID AS id FROM information_schema.INNODB_SYS_TABLES
    WHERE NAME = CONCAT(DATABASE(), '/', ${name})`.execute(db);
  return { create, tableId: Number(rows[0]!.id) };
}

async function instantColumns(): Promise<number> {
  const { rows } = await sql<{ Value: string }>`SHOW GLOBAL STATUS LIKE 'Innodb_instant_alter_column'`.execute(db);
  return Number(rows[0]?.Value ?? 0);
}

async function rowCount(name: string): Promise<number> {
  return Number((await sql.raw<{ n: number }>(`SELECT COUNT(*) AS n FROM ${name}`).execute(db)).rows[0]!.n);
}

test("adding a nullable column is INSTANT: no copy, the rows read NULL", async (t) => {
  const name = await table("t_add_column");
  const before = await shape(name);
  const instantBefore = await instantColumns();
  t.is(await alterTableOnline(db, name, ["ADD COLUMN brand VARCHAR(200) NULL", "ADD COLUMN weight_grams INT NULL"]), "INSTANT");
  const after = await shape(name);
  t.is(after.tableId, before.tableId, "same InnoDB table: not copied");
  t.regex(after.create, /`brand` varchar\(200\) DEFAULT NULL/);
  t.true((await instantColumns()) > instantBefore, "InnoDB counted an instant column change");
  const { rows } = await sql
    .raw<{ n: number }>(`SELECT COUNT(*) AS n FROM ${name} WHERE brand IS NULL AND weight_grams IS NULL`)
    .execute(db);
  t.is(Number(rows[0]!.n), 1000);
});

test("adding an index is NOCOPY (LOCK=NONE): built in place, not copied", async (t) => {
  const name = await table("t_add_index");
  const before = await shape(name);
  t.is(await alterTableOnline(db, name, ["ADD KEY idx_title (merchant_id, title, sku)"]), "NOCOPY");
  const after = await shape(name);
  t.is(after.tableId, before.tableId, "same InnoDB table: not copied");
  t.regex(after.create, /KEY `idx_title` \(`merchant_id`,`title`,`sku`\)/);
});

/** refused checks that a change is refused with OnlineAlterRefusedError, carrying the server's reason, and changes nothing. */
async function refused(t: ExecutionContext, name: string, changes: string[], reason: RegExp): Promise<void> {
  const before = await shape(name);
  const error = await t.throwsAsync(alterTableOnline(db, name, changes), { instanceOf: OnlineAlterRefusedError });
  t.regex(error!.message, /cannot run without copying the table or blocking its writes/);
  t.regex(error!.message, reason);
  t.true([1845, 1846].includes(mysqlErrno(error!.cause) ?? 0), `cause: ${String(error!.cause)}`);
  t.deepEqual(await shape(name), before, "SHOW CREATE TABLE and the table id are the same as before");
  t.is(await rowCount(name), 1000);
}

test("changing a column's type (INT to BIGINT) would copy the table: refused, table unchanged", async (t) => {
  await refused(
    t,
    await table("t_modify_type"),
    ["MODIFY qty BIGINT NOT NULL"],
    /ALGORITHM=NOCOPY is not supported. Reason: Cannot change column type/,
  );
});

test("adding a CHECK constraint would copy the table (to check every row): refused, table unchanged", async (t) => {
  await refused(t, await table("t_add_check"), ["ADD CONSTRAINT chk_qty CHECK (qty >= 0)"], /ALGORITHM=NOCOPY is not supported/);
});

test("adding a column to a table with a FULLTEXT index (hidden FTS_DOC_ID) needs a locked rebuild: refused, table unchanged", async (t) => {
  const name = await table("t_fulltext", ",\n      FULLTEXT KEY ft_title (title)");
  await refused(t, name, ["ADD COLUMN brand VARCHAR(200) NULL"], /Fulltext index creation requires a lock/);
  // An index on an existing column is still built in place there.
  t.is(await alterTableOnline(db, name, ["ADD KEY idx_qty (merchant_id, qty)"]), "NOCOPY");
});

test("a column and an index in one call are refused (NOCOPY cannot add a column, INSTANT cannot add an index); as two calls they run", async (t) => {
  const name = await table("t_column_and_index");
  await refused(
    t,
    name,
    ["ADD COLUMN brand VARCHAR(200) NULL", "ADD KEY idx_brand (merchant_id, brand, sku)"],
    /ALGORITHM=NOCOPY is not supported for this operation/,
  );
  const before = await shape(name);
  t.is(await alterTableOnline(db, name, ["ADD COLUMN brand VARCHAR(200) NULL"]), "INSTANT");
  t.is(await alterTableOnline(db, name, ["ADD KEY idx_brand (merchant_id, brand, sku)"]), "NOCOPY");
  t.is((await shape(name)).tableId, before.tableId);
});

test("a change that is wrong, not too heavy, fails with the server's own error", async (t) => {
  const name = await table("t_wrong");
  const error = await t.throwsAsync(alterTableOnline(db, name, ["ADD COLUMN qty INT NULL"]));
  t.false(error instanceof OnlineAlterRefusedError);
  t.is(mysqlErrno(error), 1060, "ER_DUP_FIELDNAME");
  await t.throwsAsync(alterTableOnline(db, "t_wrong; DROP TABLE t_wrong", ["ADD COLUMN x INT NULL"]), { message: /table name/ });
});

/**
 * The rule for every migration from the 2026-12 release on: a change to an
 * existing table goes through alterTableOnline, so one that would copy the
 * table is refused instead of run. Earlier migrations ran on tables that
 * were still small and are applied everywhere already.
 */
test("every migration since 2026-12 alters existing tables only through alterTableOnline", async (t) => {
  const { readdir, readFile } = await import("node:fs/promises");
  const path = await import("node:path");
  const services = path.join(import.meta.dirname, "..", "..");
  const offenders: string[] = [];
  let checked = 0;
  for (const service of await readdir(services)) {
    const folder = path.join(services, service, "migrations");
    const files = await readdir(folder).catch(() => [] as string[]);
    for (const file of files.filter((f) => f >= "2026_12_03")) {
      const text = await readFile(path.join(folder, file), "utf8");
      checked++;
      if (/\bALTER\s+TABLE\b|\.alterTable\(|\b(CREATE|DROP)\s+(UNIQUE\s+|FULLTEXT\s+)?INDEX\b|\.createIndex\(/i.test(text)) {
        offenders.push(`${service}/migrations/${file}`);
      }
    }
  }
  t.true(checked >= 3, `found ${checked} migrations since 2026-12`);
  t.deepEqual(offenders, [], "these alter a table directly; use alterTableOnline (services/common/src/db/database.ts)");
});
