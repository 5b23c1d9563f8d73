import test from "ava";
import { commonMigrations, createDatabase, ensureDatabase, inTransaction, migrateToLatest } from "@stockroom/common/db";
import { createMerchant } from "@stockroom/common/rpc";
import { newUlid } from "@stockroom/common";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { eventsMigrations } from "@stockroom/events";
import { NO_MERCHANDISING } from "../src/domain.ts";
import { lockProducts, writeProducts, type ChangeContext } from "../src/product-writes.ts";
import { catalogMigrations, type CatalogDb } from "../src/store.ts";

const url = testDatabaseUrl("catalog_product_writes");
await ensureDatabase(url);
const db: CatalogDb = createDatabase({ url, poolSize: 4 });
await migrateToLatest(db, [commonMigrations, eventsMigrations, catalogMigrations]);
const { merchantId } = await createMerchant(db, "Port merchant");
const ctx: ChangeContext = { merchantId, actor: "test", sourceKind: "api" };
test.after.always(async () => {
  await db.destroy();
  await dropTestDatabase(url);
});

const fields = (sku: string) => ({
  id: newUlid(),
  sku,
  title: sku,
  description: "",
  priceMinor: 100,
  currency: "EUR",
  stock: 5,
  status: "active" as const,
  attributes: {},
  ...NO_MERCHANDISING,
});

async function trail(sku: string) {
  const changes = await db
    .selectFrom("product_changes")
    .select(["change_type", "version", "product_id"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .orderBy("change_id")
    .execute();
  const ids = [...new Set(changes.map((c) => c.product_id))];
  const events = await db
    .selectFrom("outbox_events")
    .select(["event_type", "aggregate_version"])
    .where("merchant_id", "=", merchantId)
    .where("aggregate_id", "in", ids)
    .orderBy("event_id")
    .execute();
  return {
    changes: changes.map((c) => `${c.change_type}@${c.version}`),
    events: events.map((e) => `${e.event_type}@${e.aggregate_version}`),
  };
}

test("every kind of write bumps the version, keeps change times increasing, and records one audit entry and one event", async (t) => {
  const sku = "PORT-1";
  const t0 = new Date();
  const [created] = await inTransaction(db, (trx) => writeProducts(trx, ctx, [{ kind: "create", product: fields(sku) }], t0));
  t.is(created!.version, 1);
  // A clock that went back (another host) still stamps the next change after the last one.
  const behind = new Date(t0.getTime() - 60_000);
  const updated = await inTransaction(db, async (trx) => {
    const before = (await lockProducts(trx, merchantId, [sku])).get(sku)!;
    return writeProducts(trx, ctx, [{ kind: "update", before, fields: { ...before, title: "Renamed" }, changedFields: ["title"] }], behind);
  });
  t.is(updated[0]!.version, 2);
  t.true(updated[0]!.updatedAt > created!.updatedAt, "changeTime never goes back");
  const restocked = await inTransaction(db, async (trx) => {
    const before = (await lockProducts(trx, merchantId, [sku])).get(sku)!;
    return writeProducts(trx, ctx, [{ kind: "stock", before, delta: -3 }]);
  });
  t.is(restocked[0]!.stock, 2);
  t.is(restocked[0]!.version, 3);
  const tombstone = await inTransaction(db, async (trx) => {
    const before = (await lockProducts(trx, merchantId, [sku])).get(sku)!;
    return writeProducts(trx, ctx, [{ kind: "delete", before }]);
  });
  t.is(tombstone[0]!.version, 4, "a delete's tombstone carries the next version");
  t.is((await lockProducts(db as never, merchantId, [sku])).size, 0);
  const { changes, events } = await trail(sku);
  t.deepEqual(changes, ["created@1", "updated@2", "updated@3", "deleted@4"]);
  t.deepEqual(events, ["product.created@1", "product.updated@2", "product.updated@3", "product.deleted@4"]);
});

test("a stock move that would go below zero fails the transaction; nothing of it is written", async (t) => {
  const sku = "PORT-2";
  await inTransaction(db, (trx) => writeProducts(trx, ctx, [{ kind: "create", product: fields(sku) }]));
  await t.throwsAsync(
    inTransaction(db, async (trx) => {
      const before = (await lockProducts(trx, merchantId, [sku])).get(sku)!;
      // The caller is meant to check under the lock; the guarded UPDATE and CHECK (stock >= 0) hold even if it does not.
      await writeProducts(trx, ctx, [{ kind: "stock", before, delta: -6 }]);
    }),
  );
  const row = await db
    .selectFrom("products")
    .select(["stock", "version"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "=", sku)
    .executeTakeFirstOrThrow();
  t.deepEqual({ stock: row.stock, version: Number(row.version) }, { stock: 5, version: 1 });
  t.deepEqual((await trail(sku)).changes, ["created@1"]);
});

test("a chunk's writes are set-based: many creates and updates in one call, each with its own audit entry", async (t) => {
  const skus = Array.from({ length: 50 }, (_, i) => `SET-${String(i).padStart(2, "0")}`);
  await inTransaction(db, (trx) =>
    writeProducts(
      trx,
      ctx,
      skus.slice(0, 25).map((sku) => ({ kind: "create" as const, product: fields(sku) })),
    ),
  );
  const after = await inTransaction(db, async (trx) => {
    const current = await lockProducts(trx, merchantId, skus);
    t.deepEqual([...current.keys()], skus.slice(0, 25), "locked in SKU order; missing SKUs absent");
    return writeProducts(trx, ctx, [
      ...skus.slice(0, 25).map((sku) => ({
        kind: "update" as const,
        before: current.get(sku)!,
        fields: { ...current.get(sku)!, stock: 9 },
        changedFields: ["stock"],
      })),
      ...skus.slice(25).map((sku) => ({ kind: "create" as const, product: fields(sku) })),
    ]);
  });
  t.deepEqual(
    after.map((p) => `${p.sku}@${p.version}`),
    [...skus.slice(0, 25).map((s) => `${s}@2`), ...skus.slice(25).map((s) => `${s}@1`)],
  );
  const rows = await db
    .selectFrom("products")
    .select(["sku", "stock", "version"])
    .where("merchant_id", "=", merchantId)
    .where("sku", "like", "SET-%")
    .orderBy("sku")
    .execute();
  t.is(rows.length, 50);
  t.true(rows.slice(0, 25).every((r) => r.stock === 9 && Number(r.version) === 2));
  const audit = await db
    .selectFrom("product_changes")
    .select("sku")
    .where("merchant_id", "=", merchantId)
    .where("sku", "like", "SET-%")
    .execute();
  t.is(audit.length, 75, "25 creates, 25 updates, 25 creates");
});
