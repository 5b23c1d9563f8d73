/**
 * Migration 2026_12_04_150000_seal_product_changes_in_place on a table that
 * has sealed and unsealed (NULL) audit rows of several merchants, as a
 * release finds it: unsealed rows become seal_seq 0 (per shard target on
 * Vitess), sealed ones keep their positions and hashes, the position index
 * is no longer unique, and new rows are written at 0. The sealer then seals
 * the old unsealed rows after the sealed ones, and the chains verify.
 */
import test from "ava";
import { sql } from "kysely";
import { commonMigrations, createDatabase, ensureDatabase, inTransaction, migrateToLatest } from "@stockroom/common/db";
import { newUlid } from "@stockroom/common";
import { createMerchant } from "@stockroom/common/rpc";
import { dropTestDatabase, testDatabaseUrl } from "@stockroom/common/testing";
import { sealAuditChains, verifyAuditChain } from "../src/audit.ts";
import { recordChanges } from "../src/events.ts";
import { catalogModule } from "../src/module.ts";
import type { CatalogTables } from "../src/store.ts";
import { newProduct } from "./helpers.ts";

const MIGRATION = "2026_12_04_150000_seal_product_changes_in_place";

test("unsealed audit rows become position 0, sealed ones keep theirs, new ones are written at 0, and the sealer carries the chains on", async (t) => {
  const url = testDatabaseUrl("catalog_seal_migration");
  await ensureDatabase(url);
  const db = createDatabase<CatalogTables>({ url, poolSize: 4 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  const sets = [commonMigrations, ...catalogModule(db).migrations];
  const before = sets.map((set) => (set.name === "catalog" ? { ...set, only: (m: string) => m < MIGRATION } : set));
  t.false((await migrateToLatest(db, before)).includes(`catalog/${MIGRATION}`));

  const merchants = [];
  for (let i = 0; i < 6; i++) merchants.push((await createMerchant(db, `Seal ${i}`)).merchantId);
  const write = (merchantId: string, n: number) => {
    const at = new Date();
    return inTransaction(db, (trx) =>
      recordChanges(
        trx,
        { merchantId, actor: "job:x", sourceKind: "bulk_job", sourceRef: "x" },
        Array.from({ length: n }, (_, i) => {
          const product = newProduct(`M-${i}-${newUlid()}`, "Migrated", at);
          return { type: "created" as const, before: undefined, product, changedFields: ["title"], at };
        }),
      ),
    );
  };
  // Each merchant: 3 rows sealed under the old schema, then 4 unsealed (NULL) ones. This release's
  // sealer seals rows at 0, which the old unique index allows once per merchant: one row at a time.
  for (const m of merchants) await write(m, 3);
  await new Promise((r) => setTimeout(r, 5));
  for (let round = 0; round < 3; round++) {
    for (const m of merchants) {
      await sql`UPDATE product_changes SET seal_seq = 0 WHERE merchant_id = ${m} AND seal_seq IS NULL ORDER BY change_id LIMIT 1`.execute(
        db,
      );
    }
    t.is((await sealAuditChains(db, { lagMs: 0 })).sealed, 6);
  }
  for (const m of merchants) await write(m, 4);
  const count = async (where: ReturnType<typeof sql>) =>
    Number((await sql<{ n: number }>`SELECT COUNT(*) AS n FROM product_changes WHERE ${where}`.execute(db)).rows[0]!.n);
  t.is(await count(sql`seal_seq IS NULL`), 24);

  t.true((await migrateToLatest(db, sets)).includes(`catalog/${MIGRATION}`));
  t.is(await count(sql`seal_seq IS NULL`), 0);
  t.is(await count(sql`seal_seq = 0`), 24);
  t.is(await count(sql`seal_seq BETWEEN 1 AND 3`), 18, "sealed rows keep their positions");
  for (const m of merchants) t.deepEqual((await verifyAuditChain(db, m)).problems, [], m);
  const indexes = (await sql<{ Key_name: string; Non_unique: number | string }>`SHOW INDEX FROM product_changes`.execute(db)).rows;
  t.false(indexes.some((i) => i.Key_name === "uq_product_changes_seal"));
  t.true(indexes.filter((i) => i.Key_name === "idx_product_changes_seal").every((i) => Number(i.Non_unique) === 1));

  await write(merchants[0]!, 2);
  t.is(await count(sql`seal_seq = 0`), 26, "new rows are written at 0");
  await new Promise((r) => setTimeout(r, 5));
  t.is((await sealAuditChains(db, { lagMs: 0 })).sealed, 26);
  for (const m of merchants) {
    const result = await verifyAuditChain(db, m);
    t.deepEqual([result.problems, result.unsealed, result.headSeq], [[], 0, m === merchants[0] ? 9 : 7], m);
  }
});
