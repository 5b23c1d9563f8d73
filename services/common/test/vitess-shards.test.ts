/**
 * Vitess tier only (npm test runs it through vtgate; skipped on MariaDB):
 * merchants are created until both shards of the keyspace hold one, and each
 * merchant's rows are read back from the shard itself (`USE keyspace/-80`,
 * `keyspace/80-`), so the sharding key really spreads merchants and each
 * merchant's rows stay together on one shard.
 */
import test from "ava";
import { sql } from "kysely";
import { commonMigrations, createDatabase, ensureDatabase, migrateToLatest } from "../src/db/database.ts";
import type { CommonTables } from "../src/db/schema.ts";
import { createMerchant } from "../src/rpc/auth.ts";
import { dropTestDatabase, onVitess, testDatabaseUrl } from "../testing/index.ts";

const SHARDS = ["-80", "80-"] as const;

(onVitess ? test : test.skip)("merchants land on both shards, each merchant's rows on one", async (t) => {
  const url = testDatabaseUrl("vitess_shards");
  await ensureDatabase(url);
  const keyspace = new URL(url).pathname.slice(1);
  const db = createDatabase<CommonTables>({ url, poolSize: 2 });
  t.teardown(async () => {
    await db.destroy();
    await dropTestDatabase(url);
  });
  await migrateToLatest(db, [commonMigrations]);

  /** onShard reads a table's merchant ids from one shard, bypassing vtgate's routing. */
  const onShard = (shard: string, table: "merchants" | "api_keys") =>
    db.connection().execute(async (conn) => {
      await sql`USE ${sql.id(`${keyspace}/${shard}`)}`.execute(conn);
      try {
        const { rows } = await sql<{ merchant_id: string }>`SELECT merchant_id FROM ${sql.table(table)}`.execute(conn);
        return new Set(rows.map((r) => r.merchant_id));
      } finally {
        await sql`USE ${sql.id(keyspace)}`.execute(conn);
      }
    });

  const created: string[] = [];
  for (let i = 0; i < 40; i++) {
    created.push((await createMerchant(db, `Shard merchant ${i}`)).merchantId);
    const [low, high] = await Promise.all(SHARDS.map((s) => onShard(s, "merchants")));
    if (low!.size > 0 && high!.size > 0) break;
  }
  const merchants = await Promise.all(SHARDS.map((s) => onShard(s, "merchants")));
  const keys = await Promise.all(SHARDS.map((s) => onShard(s, "api_keys")));
  for (const [i, shard] of SHARDS.entries()) {
    t.true(merchants[i]!.size > 0, `no merchant on shard ${shard} after ${created.length}`);
    // A merchant's API key lives on its merchant's shard.
    t.deepEqual([...keys[i]!].sort(), [...merchants[i]!].sort(), `api_keys on ${shard}`);
  }
  // Every merchant on exactly one shard, and vtgate still finds each (routed by merchant_id).
  t.deepEqual([...merchants[0]!, ...merchants[1]!].sort(), [...created].sort());
  for (const id of created) {
    const row = await db.selectFrom("merchants").select("merchant_id").where("merchant_id", "=", id).executeTakeFirst();
    t.is(row?.merchant_id, id);
  }
});
