import test from "ava";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { sql } from "kysely";
import {
  ChangeSourceKind,
  ChangeType,
  ProductChangeDetail,
  type Product as ProtoProduct,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { createMerchant } from "@stockroom/common/rpc";
import { inTransaction, mysqlErrno, applyGrants, planGrants, shardTargets } from "@stockroom/common/db";
import { onVitess, startTestApi, type TestMerchant } from "@stockroom/common/testing";
import { newUlid, ulidFloor } from "@stockroom/common";
import { APPEND_ONLY_TABLES, canonicalContent, GENESIS_HASH, rowHash, sealAuditChains, verifyAuditChain } from "../src/audit.ts";
import { NO_MERCHANDISING, type Product } from "../src/domain.ts";
import { recordChanges } from "../src/events.ts";
import { catalogModule } from "../src/module.ts";
import { findProducts, upsertProducts, type CatalogDb, type SourceKind } from "../src/store.ts";
import { CatalogService, fieldViolations, newProduct, productInit, rejection, startCatalog } from "./helpers.ts";
import type { CatalogTables } from "../src/store.ts";

// Serial: sealing works on every merchant of the database at once.
const api = await startCatalog("catalog_audit");
const db = api.api.db;
test.after.always(() => api.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** rowToProductState is a wire product as the audit trail's whole snapshots (format 1) hold it. */
function rowToProductState(p: ProtoProduct): Omit<Product, "version"> {
  return {
    id: p.id,
    sku: p.sku,
    title: p.title,
    description: p.description,
    priceMinor: Number(p.price!.minorUnits),
    currency: p.price!.currencyCode,
    stock: p.stock,
    status: "active",
    attributes: { ...p.attributes },
    gtin: p.gtin,
    brand: p.brand,
    compareAtMinor: null,
    weightGrams: null,
    createdAt: new Date(Number(p.createTime!.seconds) * 1000),
    updatedAt: new Date(Number(p.updateTime!.seconds) * 1000),
  };
}

/** seal seals everything committed so far (lag 0, after the clock moved past the last change). */
async function seal(target: CatalogDb = db, batch?: number) {
  await sleep(5);
  return sealAuditChains(target, { lagMs: 0, batch });
}

/**
 * writeAs changes the stock of products the way bulk apply, rollback and
 * orders do: locked read, upsert, recordChanges with their source, one transaction.
 */
async function writeAs(merchantId: string, sourceKind: SourceKind, sourceRef: string, skus: string[], delta: number): Promise<void> {
  await inTransaction(db, async (trx) => {
    const current = await findProducts(trx, merchantId, skus, true);
    const now = new Date();
    const next: Product[] = current.map((p) => ({ ...p, stock: p.stock + delta, version: p.version + 1, updatedAt: now }));
    await upsertProducts(trx, merchantId, next);
    await recordChanges(
      trx,
      { merchantId, actor: sourceKind === "order" ? "system" : `job:${sourceRef}`, sourceKind, sourceRef },
      next.map((p, i) => ({ type: "updated", before: current[i], product: p, changedFields: ["stock"], at: now })),
    );
  });
}

async function newMerchant(name: string): Promise<TestMerchant> {
  return createMerchant(api.api.db, name);
}

test.serial("ListChanges lists a job's changes, its rollback's, an order's, by SKU, newest first, for one merchant only", async (t) => {
  const a = api.client(CatalogService, api.merchantA);
  const b = api.client(CatalogService, api.merchantB);
  for (const sku of ["L-1", "L-2", "L-3"]) await a.createProduct({ product: productInit(sku) });
  await b.createProduct({ product: productInit("L-1") });
  const job = newUlid();
  const order = newUlid();
  await writeAs(api.merchantA.merchantId, "bulk_job", job, ["L-1", "L-2"], 5);
  await writeAs(api.merchantB.merchantId, "bulk_job", job, ["L-1"], 7); // same reference, other merchant
  await writeAs(api.merchantA.merchantId, "rollback", job, ["L-1", "L-2"], -5);
  await writeAs(api.merchantA.merchantId, "order", order, ["L-3"], -1);
  api.queries.length = 0;

  const all = (await a.listChanges({})).changes;
  t.is(all.length, 8);
  t.deepEqual(
    all.map((c) => c.id),
    all
      .map((c) => c.id)
      .sort()
      .reverse(),
    "newest first",
  );
  t.true(
    all.every((c) => c.sealSeq === 0n && c.rowHash.length === 0),
    "not sealed yet",
  );

  const applied = (await a.listChanges({ source: { kind: ChangeSourceKind.BULK_JOB, reference: job } })).changes;
  t.deepEqual(applied.map((c) => c.sku).sort(), ["L-1", "L-2"]);
  t.true(applied.every((c) => c.source?.kind === ChangeSourceKind.BULK_JOB && c.source.reference === job && c.after!.stock === 15));
  const rolledBack = (await a.listChanges({ source: { kind: ChangeSourceKind.ROLLBACK, reference: job } })).changes;
  t.deepEqual(rolledBack.map((c) => [c.sku, c.after!.stock]).sort(), [
    ["L-1", 10],
    ["L-2", 10],
  ]);
  const orders = (await a.listChanges({ source: { kind: ChangeSourceKind.ORDER } })).changes;
  t.deepEqual(
    orders.map((c) => [c.sku, c.source!.reference, c.type]),
    [["L-3", order, ChangeType.UPDATED]],
  );
  const apiMade = (await a.listChanges({ source: { kind: ChangeSourceKind.API } })).changes;
  t.deepEqual(
    apiMade.map((c) => c.type),
    [ChangeType.CREATED, ChangeType.CREATED, ChangeType.CREATED],
  );
  const l1 = (await a.listChanges({ sku: "L-1" })).changes;
  t.deepEqual(
    l1.map((c) => c.source!.kind),
    [ChangeSourceKind.ROLLBACK, ChangeSourceKind.BULK_JOB, ChangeSourceKind.API],
  );
  const l1Job = (await a.listChanges({ sku: "L-1", source: { kind: ChangeSourceKind.BULK_JOB, reference: job } })).changes;
  t.deepEqual(
    l1Job.map((c) => c.id),
    [l1[1]!.id],
  );

  // Merchant B sees its own change under the same reference, never A's.
  const other = (await b.listChanges({ source: { kind: ChangeSourceKind.BULK_JOB, reference: job } })).changes;
  t.deepEqual(
    other.map((c) => [c.sku, c.after!.stock]),
    [["L-1", 17]],
  );
  t.is((await b.listChanges({})).changes.length, 2);

  // Every statement the listing ran names exactly one merchant (Vitess readiness).
  const listing = api.queries.filter((q) => /product_changes/.test(q.sql));
  t.true(listing.length >= 9);
  for (const q of listing) {
    t.regex(q.sql.replace(/\s+/g, " ").toLowerCase(), /\bwhere `?merchant_id`? = \?/);
    t.is(new Set(q.parameters.filter((p) => p === api.merchantA.merchantId || p === api.merchantB.merchantId)).size, 1, q.sql);
  }
});

test.serial("ListChanges pages with keyset tokens bound to the filter, and validates its input", async (t) => {
  const a = api.client(CatalogService, api.merchantA, "connect");
  const everything = (await a.listChanges({ pageSize: 1000 })).changes.map((c) => c.id);
  const seen: string[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await a.listChanges({ pageSize: 3, pageToken });
    t.true(page.changes.length <= 3);
    seen.push(...page.changes.map((c) => c.id));
    pageToken = page.nextPageToken;
    pages++;
  } while (pageToken !== "");
  t.deepEqual(seen, everything);
  t.is(pages, Math.ceil(everything.length / 3));

  const first = await a.listChanges({ pageSize: 1, sku: "L-1" });
  t.not(first.nextPageToken, "");
  const second = await a.listChanges({ pageSize: 1, sku: "L-1", pageToken: first.nextPageToken });
  t.true(second.changes[0]!.id < first.changes[0]!.id);
  const moved = await rejection(t, a.listChanges({ pageSize: 1, sku: "L-2", pageToken: first.nextPageToken }), Code.InvalidArgument);
  t.deepEqual(fieldViolations(moved), ["page_token"]);

  const noKind = await rejection(t, a.listChanges({ source: { reference: newUlid() } }), Code.InvalidArgument);
  t.deepEqual(fieldViolations(noKind), ["source.kind"]);
  const unknown = await rejection(t, a.listChanges({ source: { kind: 42 as ChangeSourceKind } }), Code.InvalidArgument);
  t.deepEqual(fieldViolations(unknown), ["source.kind"]);
  const longRef = await rejection(
    t,
    a.listChanges({ source: { kind: ChangeSourceKind.ORDER, reference: "x".repeat(27) } }),
    Code.InvalidArgument,
  );
  t.deepEqual(fieldViolations(longRef), ["source.reference"]);
  await rejection(t, a.listChanges({ sku: "bad sku\n" }), Code.InvalidArgument);
  await rejection(t, a.listChanges({ pageSize: -1 }), Code.InvalidArgument);
  t.deepEqual((await a.listChanges({ source: { kind: ChangeSourceKind.ORDER, reference: newUlid() } })).changes, []);
});

test.serial("the sealer seals every committed change into one chain per merchant, and verify passes", async (t) => {
  const a = api.client(CatalogService, api.merchantA);
  const before = await seal(db, 3);
  t.true(before.sealed >= 10, `sealed ${before.sealed}`);
  t.is((await seal(db)).sealed, 0, "nothing left");
  const listed = (await a.listChanges({})).changes;
  t.deepEqual(
    listed.map((c) => c.sealSeq),
    listed.map((_, i) => BigInt(listed.length - i)),
    "sealed 1..n in change order",
  );
  t.true(listed.every((c) => c.rowHash.length === 32));
  // History keeps growing; the chain continues where it stopped.
  await a.updateProduct({ product: { sku: "L-2", title: "Renamed" }, updateMask: { paths: ["title"] } });
  await a.deleteProduct({ sku: "L-3" });
  t.is((await a.listChanges({ pageSize: 1 })).changes[0]!.sealSeq, 0n, "a new change is unsealed at first");
  t.is((await sealAuditChains(db, { lagMs: 60_000 })).sealed, 0, "changes younger than the lag wait");
  t.true((await seal()).sealed >= 2);
  const after = (await a.listChanges({ pageSize: 2 })).changes;
  t.deepEqual(
    after.map((c) => c.sealSeq),
    [BigInt(listed.length + 2), BigInt(listed.length + 1)],
  );
  for (const merchant of [api.merchantA, api.merchantB]) {
    const result = await verifyAuditChain(db, merchant.merchantId, { pageSize: 4 });
    t.deepEqual(result.problems, [], merchant.merchantId);
    t.is(result.unsealed, 0);
    t.is(result.sealed, result.headSeq);
  }
  t.is((await verifyAuditChain(db, api.merchantA.merchantId)).headSeq, listed.length + 2);
});

test.serial("the sealer finds every merchant with changes older than the lag, past its first dives, and no other", async (t) => {
  await seal(); // what earlier tests left
  // 90 merchants (more than the 64 found by index dives; the rest are found
  // by one scan from there), in id order: every third has only a change
  // younger than the lag, the others an old one and a young one.
  const merchants = Array.from({ length: 90 }, () => newUlid()).sort();
  const old = new Date(Date.now() - 3_600_000);
  const young = (i: number) => !(i % 3);
  // A transaction per merchant: on Vitess the merchants are on several shards.
  await Promise.all(
    merchants.map(async (merchantId, i) => {
      const at = young(i) ? [new Date()] : [old, new Date()];
      await inTransaction(db, (trx) =>
        recordChanges(
          trx,
          { merchantId, actor: "job:x", sourceKind: "bulk_job", sourceRef: "x" },
          at.map((when) => ({
            type: "created",
            before: undefined,
            product: newProduct(`S-${i}`, "Sealable", when),
            changedFields: ["title"],
            at: when,
          })),
        ),
      );
      // newUlid never goes back in time: give the old change an id of its time.
      await sql`
        UPDATE product_changes SET change_id = CONCAT(${ulidFloor(old.getTime()).slice(0, 10)}, SUBSTRING(change_id, 11))
        WHERE merchant_id = ${merchantId} AND created_at = ${old}`.execute(db);
    }),
  );
  const unsealed = async () =>
    (
      await db
        .selectFrom("product_changes")
        .select("merchant_id")
        .distinct()
        .where("merchant_id", "in", merchants)
        .where("seal_seq", "=", 0)
        .orderBy("merchant_id")
        .execute()
    ).map((r) => r.merchant_id);

  // `merchants` bounds each shard target's run: on Vitess every shard finds its own.
  const shards = (await shardTargets(db)).length;
  const limited = await sealAuditChains(db, { lagMs: 60_000, merchants: 10 });
  t.deepEqual([limited.merchants, limited.sealed], [10 * shards, 10 * shards], "at most `merchants` merchants per run");
  const lagged = await sealAuditChains(db, { lagMs: 60_000 });
  t.deepEqual([lagged.merchants, lagged.sealed], [60 - 10 * shards, 60 - 10 * shards], "the other old changes, one per merchant");
  t.deepEqual(await unsealed(), merchants, "every merchant still has its young change");
  t.deepEqual((await seal()).sealed, 90);
  t.deepEqual(await unsealed(), []);
});

test.serial(
  "audit rows are written at their sealed size (position 0, zero hashes) and sealed in place; unsealed rows answer no hash, a sealed one left without is incomplete",
  async (t) => {
    const m = await newMerchant("Presized");
    const c = api.client(CatalogService, m);
    for (const sku of ["Z-1", "Z-2"]) await c.createProduct({ product: productInit(sku) });
    const rows = () =>
      db
        .selectFrom("product_changes")
        .select(["change_id", "seal_seq", "prev_hash", "row_hash"])
        .where("merchant_id", "=", m.merchantId)
        .orderBy("change_id")
        .execute();
    // The writers do not name the seal columns: their defaults give the row its sealed size (2026_12_04_140000, 150000).
    t.deepEqual(
      (await rows()).map((r) => [Number(r.seal_seq), r.prev_hash, r.row_hash]),
      [
        [0, GENESIS_HASH, GENESIS_HASH],
        [0, GENESIS_HASH, GENESIS_HASH],
      ],
    );
    t.deepEqual(
      (await c.listChanges({})).changes.map((ch) => [ch.sealSeq, ch.rowHash.length]),
      [
        [0n, 0],
        [0n, 0],
      ],
      "unsealed: no hash",
    );
    await seal();
    const sealed = await rows();
    t.deepEqual(
      sealed.map((r) => Number(r.seal_seq)),
      [1, 2],
    );
    t.deepEqual(sealed[0]!.prev_hash, GENESIS_HASH);
    t.deepEqual(sealed[1]!.prev_hash, sealed[0]!.row_hash);
    t.false(sealed.some((r) => r.row_hash!.equals(GENESIS_HASH)));
    t.deepEqual(
      (await c.listChanges({})).changes.map((ch) => [ch.sealSeq, Buffer.from(ch.rowHash)]),
      [
        [2n, sealed[1]!.row_hash],
        [1n, sealed[0]!.row_hash],
      ],
    );
    t.deepEqual((await verifyAuditChain(db, m.merchantId)).problems, []);
    // As the admin (root) user: the last entry's hash back to the unsealed default.
    await db
      .updateTable("product_changes")
      .set({ row_hash: GENESIS_HASH })
      .where("merchant_id", "=", m.merchantId)
      .where("change_id", "=", sealed[1]!.change_id)
      .execute();
    t.deepEqual(
      (await verifyAuditChain(db, m.merchantId)).problems.map((p) => [p.kind, p.sealSeq]),
      [["incomplete_seal", 2]],
    );
  },
);

test.serial("verify finds two rows put at one chain position, also where they fall on two pages", async (t) => {
  const m = await newMerchant("Duplicated");
  const c = api.client(CatalogService, m);
  for (const sku of ["D-1", "D-2", "D-3"]) await c.createProduct({ product: productInit(sku) });
  await seal();
  const third = await db
    .selectFrom("product_changes")
    .select("change_id")
    .where("merchant_id", "=", m.merchantId)
    .where("seal_seq", "=", 3)
    .executeTakeFirstOrThrow();
  // As the admin (root) user: the index on positions is not unique (unsealed rows share 0).
  await db
    .updateTable("product_changes")
    .set({ seal_seq: 2 })
    .where("merchant_id", "=", m.merchantId)
    .where("change_id", "=", third.change_id)
    .execute();
  for (const pageSize of [1000, 2, 1]) {
    t.deepEqual(
      (await verifyAuditChain(db, m.merchantId, { pageSize })).problems.map((p) => [p.kind, p.sealSeq, p.changeId]),
      [
        ["duplicate_position", 2, third.change_id],
        ["missing", 3, undefined],
      ],
      `pages of ${pageSize}`,
    );
  }
});

test.serial("verify reports exactly what was tampered with: changed content, deleted entries, a deleted last entry", async (t) => {
  const m = await newMerchant("Tampered");
  const c = api.client(CatalogService, m);
  for (const sku of ["T-1", "T-2", "T-3"]) await c.createProduct({ product: productInit(sku) }); // seal_seq 1..3
  await c.adjustStock({ sku: "T-1", delta: 1 }); // 4: T-1 v2
  await c.adjustStock({ sku: "T-1", delta: 1 }); // 5: T-1 v3
  await c.adjustStock({ sku: "T-2", delta: 1 }); // 6: T-2 v2 (its current version)
  await seal();
  t.deepEqual((await verifyAuditChain(db, m.merchantId)).problems, []);
  const row = async (seq: number) =>
    await db
      .selectFrom("product_changes")
      .selectAll()
      .where("merchant_id", "=", m.merchantId)
      .where("seal_seq", "=", seq)
      .executeTakeFirstOrThrow();
  const [r2, r4, r6] = [await row(2), await row(4), await row(6)];

  // As the admin (root) user: rewrite who made change 2.
  await db
    .updateTable("product_changes")
    .set({ actor: "someone else" })
    .where("merchant_id", "=", m.merchantId)
    .where("change_id", "=", r2.change_id)
    .execute();
  let problems = (await verifyAuditChain(db, m.merchantId)).problems;
  t.deepEqual(
    problems.map((p) => [p.kind, p.sealSeq, p.changeId, p.sku]),
    [["content_changed", 2, r2.change_id, "T-2"]],
  );

  await db.deleteFrom("product_changes").where("merchant_id", "=", m.merchantId).where("change_id", "=", r4.change_id).execute();
  problems = (await verifyAuditChain(db, m.merchantId)).problems;
  t.deepEqual(
    problems.map((p) => [p.kind, p.sealSeq]),
    [
      ["content_changed", 2],
      ["missing", 4],
    ],
  );

  // The last entry is also T-2's current version: both the chain and the products say so.
  await db.deleteFrom("product_changes").where("merchant_id", "=", m.merchantId).where("change_id", "=", r6.change_id).execute();
  problems = (await verifyAuditChain(db, m.merchantId)).problems;
  t.deepEqual(
    problems.map((p) => [p.kind, p.sealSeq, p.sku]),
    [
      ["content_changed", 2, "T-2"],
      ["missing", 4, undefined],
      ["missing", 6, undefined],
      ["no_audit_entry", undefined, "T-2"],
    ],
  );
  t.regex(problems[2]!.detail, /ends before its head/);

  // Re-hashing the rewritten entry (no secret is needed) moves the evidence to the next link.
  const tampered = await row(2);
  await db
    .updateTable("product_changes")
    .set({ row_hash: rowHash(tampered.prev_hash!, tampered) })
    .where("merchant_id", "=", m.merchantId)
    .where("change_id", "=", r2.change_id)
    .execute();
  problems = (await verifyAuditChain(db, m.merchantId)).problems;
  t.deepEqual(
    problems.map((p) => [p.kind, p.sealSeq]),
    [
      ["broken_link", 3],
      ["missing", 4],
      ["missing", 6],
      ["no_audit_entry", undefined],
    ],
  );
});

test.serial("sealers racing in parallel, with writes in between, build one consistent chain", async (t) => {
  const m = await newMerchant("Racing");
  const now = new Date();
  const products = Array.from({ length: 120 }, (_, i) => newProduct(`R-${i}`, "Racer", now));
  const write = (part: Product[]) =>
    inTransaction(db, async (trx) => {
      await upsertProducts(trx, m.merchantId, part);
      await recordChanges(
        trx,
        { merchantId: m.merchantId, actor: "job:x", sourceKind: "bulk_job", sourceRef: "x" },
        part.map((p) => ({ type: "created", before: undefined, product: p, changedFields: ["title"], at: new Date() })),
      );
    });
  await write(products.slice(0, 60));
  await sleep(5);
  const failures: unknown[] = [];
  const racer = async () => {
    for (let i = 0; i < 8; i++) failures.push(...(await sealAuditChains(db, { lagMs: 0, batch: 7 })).failed);
  };
  await Promise.all([racer(), racer(), racer(), racer(), write(products.slice(60, 90)), write(products.slice(90))]);
  t.deepEqual(failures, [], "no sealer tripped over another");
  await seal();
  const result = await verifyAuditChain(db, m.merchantId);
  t.deepEqual(result.problems, []);
  t.is(result.sealed, 120);
  t.is(result.headSeq, 120);
  t.is(result.unsealed, 0);
  const seqs = await db.selectFrom("product_changes").select("seal_seq").where("merchant_id", "=", m.merchantId).execute();
  t.deepEqual(
    seqs.map((s) => Number(s.seal_seq)).sort((x, y) => x - y),
    Array.from({ length: 120 }, (_, i) => i + 1),
  );
});

// Not through vtgate: MySQL users and grants live on each shard's mysqld (the tablets' app user), which
// vtgate does not manage (CREATE USER is a syntax error there); db:grants runs against the mysqld.
(onVitess ? test.serial.skip : test.serial)(
  "as the service user the audit trail is append-only, and the API and the sealer still work",
  async (t) => {
    const database = decodeURIComponent(new URL(api.databaseUrl).pathname.slice(1));
    const user = `t_audit_${randomBytes(4).toString("hex")}`;
    const password = randomBytes(12).toString("hex");
    await sql.raw(`CREATE USER '${user}'@'%' IDENTIFIED BY '${password}'`).execute(db);
    t.teardown(() =>
      sql
        .raw(`DROP USER IF EXISTS '${user}'@'%'`)
        .execute(db)
        .then(() => undefined),
    );
    const plan = await planGrants(db, { database, user, appendOnly: APPEND_ONLY_TABLES });
    t.deepEqual(plan.warnings, []);
    t.true(
      plan.statements.includes(
        `GRANT SELECT, INSERT, UPDATE (\`seal_seq\`, \`prev_hash\`, \`row_hash\`) ON \`${database}\`.\`product_changes\` TO '${user}'@'%'`,
      ),
    );
    t.true(plan.statements.includes(`GRANT SELECT, INSERT, UPDATE, DELETE ON \`${database}\`.\`products\` TO '${user}'@'%'`));
    t.false(plan.statements.some((s) => /kysely_migration/.test(s)));
    await applyGrants(db, plan);
    // Run again, the plan is the same (no REVOKEs); a stray table UPDATE on the audit trail is revoked.
    t.deepEqual((await planGrants(db, { database, user, appendOnly: APPEND_ONLY_TABLES })).statements, plan.statements);
    await sql.raw(`GRANT UPDATE, DELETE ON \`${database}\`.product_changes TO '${user}'@'%'`).execute(db);
    const again = await planGrants(db, { database, user, appendOnly: APPEND_ONLY_TABLES });
    t.deepEqual(
      again.statements.filter((s) => s.startsWith("REVOKE")),
      [`REVOKE UPDATE, DELETE ON \`${database}\`.\`product_changes\` FROM '${user}'@'%'`],
    );
    await applyGrants(db, again);
    await sql.raw(`GRANT UPDATE ON \`${database}\`.* TO '${user}'@'%'`).execute(db);
    t.regex(
      (await planGrants(db, { database, user, appendOnly: APPEND_ONLY_TABLES })).warnings.join("\n"),
      /UPDATE on `.*`\.\*, which overrides/,
    );
    await sql.raw(`REVOKE UPDATE ON \`${database}\`.* FROM '${user}'@'%'`).execute(db);

    const url = new URL(api.databaseUrl);
    url.username = user;
    url.password = password;
    const restricted = await startTestApi<CatalogTables>("catalog_audit_restricted", (d) => [catalogModule(d)], {
      databaseUrl: url.toString(),
    });
    t.teardown(() => restricted.close());
    const rdb = restricted.api.db;

    const c = restricted.client(CatalogService, restricted.merchantA);
    const { product } = await c.createProduct({ product: productInit("G-1") });
    await c.updateProduct({ product: { sku: "G-1", title: "New title", etag: product!.etag }, updateMask: { paths: ["title"] } });
    await c.adjustStock({ sku: "G-1", delta: -3, reason: "damaged" });
    await c.deleteProduct({ sku: "G-1" });
    const trail = (await c.listChanges({ sku: "G-1" })).changes;
    t.deepEqual(
      trail.map((x) => x.type),
      [ChangeType.DELETED, ChangeType.UPDATED, ChangeType.UPDATED, ChangeType.CREATED],
    );

    const merchantId = restricted.merchantA.merchantId;
    const denied = async (statement: Promise<unknown>) => {
      const error = await t.throwsAsync(statement);
      t.true([1142, 1143].includes(mysqlErrno(error) ?? 0), `${mysqlErrno(error)}: ${error?.message}`);
    };
    await denied(rdb.updateTable("product_changes").set({ actor: "forged" }).where("merchant_id", "=", merchantId).execute());
    await denied(rdb.updateTable("product_changes").set({ reason: "" }).where("merchant_id", "=", merchantId).execute());
    await denied(rdb.deleteFrom("product_changes").where("merchant_id", "=", merchantId).execute());
    await denied(sql`TRUNCATE TABLE product_changes`.execute(rdb));
    await denied(sql`DROP TABLE product_changes`.execute(rdb));

    const sealed = await seal(rdb);
    t.true(sealed.sealed >= 4);
    const verified = await verifyAuditChain(rdb, merchantId);
    t.deepEqual(verified.problems, []);
    t.is(verified.sealed, 4);
    t.true((await c.listChanges({ sku: "G-1" })).changes.every((x) => x.sealSeq > 0n));
  },
);

test("a row hashes the same whether the driver returns JSON columns as text or parsed, in any key order", (t) => {
  const base = {
    merchant_id: "01JMERCHANT0000000000000000",
    change_id: "01JCHANGE00000000000000000",
    product_id: "01JPRODUCT0000000000000000",
    sku: "MUG-1",
    change_type: "updated",
    actor: "api_key:abc",
    source_kind: "api",
    source_ref: "",
    request_id: "r-1",
    reason: "",
  };
  const text = {
    ...base,
    version: "7",
    created_at: new Date(1_700_000_000_123),
    after_state: null,
    changed_fields: '["stock","attributes.color"]',
    before_state: '{"stock": 3, "attributes": {"size": "L", "color": "red"}, "title": "Mug \u00e9"}',
  };
  const parsed = {
    ...base,
    version: 7,
    created_at: new Date(1_700_000_000_123),
    after_state: null,
    changed_fields: ["stock", "attributes.color"],
    before_state: { title: "Mug é", attributes: { color: "red", size: "L" }, stock: 3 },
  };
  t.is(canonicalContent(text), canonicalContent(parsed));
  t.deepEqual(rowHash(GENESIS_HASH, text), rowHash(GENESIS_HASH, parsed));
  t.notDeepEqual(rowHash(GENESIS_HASH, parsed), rowHash(GENESIS_HASH, { ...parsed, before_state: { ...parsed.before_state, stock: 4 } }));
  t.notDeepEqual(rowHash(GENESIS_HASH, parsed), rowHash(Buffer.alloc(32, 1), parsed), "the previous hash is part of the hash");
  t.notDeepEqual(rowHash(GENESIS_HASH, parsed), rowHash(GENESIS_HASH, { ...parsed, created_at: new Date(1_700_000_000_124) }));
  // Rows from before compact entries (format 1, or no format at all) hash exactly as the release before them did.
  const releasedHash = "301ae1a6d81aee082148827c83c3ab44b994571e9477be56e6b9680afa5a1519";
  t.is(rowHash(GENESIS_HASH, parsed).toString("hex"), releasedHash);
  t.is(rowHash(GENESIS_HASH, { ...parsed, format: 1 }).toString("hex"), releasedHash);
  t.notDeepEqual(rowHash(GENESIS_HASH, { ...parsed, format: 2 }), rowHash(GENESIS_HASH, parsed), "the format is part of the hash");
});

test.serial("audit entries keep only the changed fields; history answers them as CHANGED_FIELDS, old whole entries as FULL", async (t) => {
  const m = await newMerchant("Compact");
  const c = api.client(CatalogService, m);
  const { product: created } = await c.createProduct({ product: productInit("C-1", { brand: "Acme" }) });
  await c.updateProduct({
    product: { sku: "C-1", price: { currencyCode: "EUR", minorUnits: 2500n }, attributes: { color: "red", size: "L" } },
    updateMask: { paths: ["price", "attributes.size"] },
  });
  await c.adjustStock({ sku: "C-1", delta: -3 });
  const rows = await db
    .selectFrom("product_changes")
    .select(["version", "format", "before_state", "after_state"])
    .where("merchant_id", "=", m.merchantId)
    .orderBy("version")
    .execute();
  const json = (v: unknown) => (v === null ? null : typeof v === "string" ? JSON.parse(v) : v);
  t.deepEqual(
    rows.map((r) => [Number(r.version), r.format, json(r.before_state), json(r.after_state)]),
    [
      [
        1,
        2,
        null,
        {
          title: "Product C-1",
          description: "A fine product",
          priceMinor: 1999,
          currency: "EUR",
          stock: 10,
          status: "active",
          attributes: { color: "red" },
          brand: "Acme",
        },
      ],
      [
        2,
        2,
        { priceMinor: 1999, currency: "EUR", attributes: { color: "red" } },
        { priceMinor: 2500, currency: "EUR", attributes: { color: "red", size: "L" } },
      ],
      [3, 2, { stock: 10 }, { stock: 7 }],
    ],
  );
  // An entry as a release before compact entries wrote it: whole products, no format (the column's default).
  const before = { ...NO_MERCHANDISING, ...rowToProductState(created!), stock: 7, version: 3 };
  const oldChangeId = newUlid();
  await sql`
    INSERT INTO product_changes (merchant_id, change_id, product_id, sku, change_type, version, changed_fields,
      before_state, after_state, actor, source_kind, source_ref, request_id, reason, created_at)
    VALUES (${m.merchantId}, ${oldChangeId}, ${created!.id}, 'C-1', 'updated', 4, '["title"]',
      ${JSON.stringify(before)}, ${JSON.stringify({ ...before, title: "Old release", version: 4 })}, 'system', 'api', '', '', '', NOW(3))`.execute(
    db,
  );

  const history = (await c.listProductHistory({ sku: "C-1" })).changes;
  t.deepEqual(
    history.map((h) => [Number(h.version), ProductChangeDetail[h.detail]]),
    [
      [4, "FULL"],
      [3, "CHANGED_FIELDS"],
      [2, "CHANGED_FIELDS"],
      [1, "CHANGED_FIELDS"],
    ],
  );
  const [old, stock, price, create] = history;
  t.is(old!.before!.title, "Product C-1");
  t.is(old!.after!.title, "Old release");
  t.is(old!.after!.stock, 7, "a whole entry still carries every field");
  t.like(stock!.before, { id: created!.id, sku: "C-1", version: 2n, stock: 10, title: "" });
  t.like(stock!.after, { version: 3n, stock: 7, title: "", description: "" });
  t.is(stock!.after!.price, undefined, "fields the entry did not change are unset");
  t.deepEqual(stock!.changedFields, ["stock"]);
  t.is(price!.before!.price?.minorUnits, 1999n);
  t.is(price!.after!.price?.minorUnits, 2500n);
  t.is(price!.after!.price?.currencyCode, "EUR");
  t.deepEqual(price!.after!.attributes, { color: "red", size: "L" });
  t.is(price!.after!.etag, `${created!.id}.2`);
  // A create's after is the whole product, as GetProduct answered it then.
  t.deepEqual(create!.after, created);
  t.is(create!.before, undefined);

  // The chain seals and verifies old and compact entries alike, and notices a rewritten format.
  await seal();
  t.deepEqual((await verifyAuditChain(db, m.merchantId)).problems, []);
  await db.updateTable("product_changes").set({ format: 1 }).where("merchant_id", "=", m.merchantId).where("version", "=", 3).execute();
  t.deepEqual(
    (await verifyAuditChain(db, m.merchantId)).problems.map((p) => p.kind),
    ["content_changed"],
  );
});
