/**
 * ReindexProducts rebuilds a merchant's projection from the catalog while
 * live changes keep flowing, and ends equal to the catalog.
 */
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { sql } from "kysely";
import { listProducts, NO_MERCHANDISING } from "@stockroom/catalog";
import { waitFor, type TestMerchant } from "@stockroom/common/testing";
import { newUlid } from "@stockroom/common";
import { entryFromProduct } from "../src/convert.ts";
import { reindexMerchant, reindexOlderTerms, type ReindexProgress } from "../src/reindex.ts";
import { type DbClock, merchantClock, tombstone, upsertEntries } from "../src/store.ts";
import { productInit, startSearchHarness, type SearchHarness } from "./harness.ts";

let h: SearchHarness;

test.before(async () => {
  // Pages of 50 over RPC: a stream of several messages, cut and taken up below.
  h = await startSearchHarness("reindex", { reindexPageSize: 50 });
});

test.after.always(async () => {
  await h?.close();
});

const sku = (i: number) => `SKU-${String(i).padStart(4, "0")}`;
/** A product deleted while events were lost, which the writers leave alone. */
const RESERVED = 60;

/** catalogState and searchState describe products the same way, for comparing every row. */
async function catalogState(merchant: TestMerchant): Promise<string[]> {
  const products = await listProducts(h.db, merchant.merchantId, { order: "sku", limit: 100_000 });
  return products.map((p) => [p.sku, p.id, p.version, p.title, p.priceMinor, p.currency, p.stock, p.status].join("|"));
}

async function searchState(merchant: TestMerchant): Promise<string[]> {
  const rows = await h.searchDb
    .selectFrom("search_documents")
    .selectAll()
    .where("merchant_id", "=", merchant.merchantId)
    .where("deleted", "=", 0)
    .orderBy("sku")
    .execute();
  return rows.map((r) => [r.sku, r.product_id, r.version, r.title, r.price_minor, r.currency, r.stock, r.status].join("|"));
}

async function reindexOverRpc(merchant: TestMerchant): Promise<Omit<ReindexProgress, "resume">> {
  let last: Omit<ReindexProgress, "resume"> | undefined;
  for await (const p of h.search(merchant).reindexProducts({})) {
    last = { read: Number(p.productsRead), updated: Number(p.productsUpdated), removed: Number(p.productsRemoved), done: p.done };
  }
  return last!;
}

test.serial("(before any relay runs) a merchant's reindex touches only its own rows", async (t) => {
  const [a, b] = [await h.newMerchant(), await h.newMerchant()];
  await h.catalog(a).createProduct({ product: productInit("A-1") });
  await h.catalog(b).createProduct({ product: productInit("B-1") });
  const progress = await reindexOverRpc(a);
  t.like(progress, { read: 1, updated: 1, removed: 0, done: true });
  t.deepEqual(await searchState(b), [], "B's product waits for its own events or reindex");
  t.is((await searchState(a)).length, 1);
});

test.serial("(before any relay runs) a reindex remakes the terms of rows made by older rules (TERMS_FORMAT)", async (t) => {
  const merchant = await h.newMerchant();
  for (const s of ["F-1", "F-2", "F-3"]) await h.catalog(merchant).createProduct({ product: productInit(s, { title: `Kettle ${s}` }) });
  t.like(await reindexOverRpc(merchant), { read: 3, updated: 3 });
  const found = async () => (await h.search(merchant).searchProducts({ query: "kettle" })).results.map((r) => r.sku);
  t.deepEqual(await found(), ["F-1", "F-2", "F-3"]);
  // As a release with other rules (format 0 here) left them, at the catalog's state: two rows.
  await h.searchDb
    .updateTable("search_documents")
    .set({ words: "", terms_format: 0 })
    .where("merchant_id", "=", merchant.merchantId)
    .where("sku", "in", ["F-1", "F-2"])
    .execute();
  t.deepEqual(await found(), ["F-3"]);
  t.like(await reindexOverRpc(merchant), { read: 3, updated: 2 }, "only the rows of older rules");
  t.deepEqual(await found(), ["F-1", "F-2", "F-3"]);
  t.like(await reindexOverRpc(merchant), { updated: 0 }, "nothing left");
});

test.serial("(before any relay runs) reindexOlderTerms remakes every merchant's rows of older rules, in the background", async (t) => {
  const merchants = [await h.newMerchant(), await h.newMerchant()];
  for (const merchant of merchants) {
    await h.catalog(merchant).createProduct({ product: productInit("K-1", { title: "Kettle" }) });
    await reindexOverRpc(merchant);
  }
  const ids = merchants.map((m) => m.merchantId);
  // A statement per merchant: on Vitess, the two may be on two shards.
  for (const id of ids)
    await h.searchDb.updateTable("search_documents").set({ words: "", terms_format: 0 }).where("merchant_id", "=", id).execute();
  const found = async (merchant: TestMerchant) => (await h.search(merchant).searchProducts({ query: "kettle" })).results.map((r) => r.sku);
  const lines: string[] = [];
  const log = { info: (msg: string, fields?: object) => lines.push(`${msg} ${JSON.stringify(fields)}`), warn: () => {}, error: () => {} };
  await reindexOlderTerms({ catalogDb: h.db, searchDb: h.searchDb }, log).done;
  for (const merchant of merchants) t.deepEqual(await found(merchant), ["K-1"]);
  t.true(
    lines.some((l) => l.includes('"merchants":2')),
    lines.join("\n"),
  );
  lines.length = 0;
  await reindexOlderTerms({ catalogDb: h.db, searchDb: h.searchDb }, log).done;
  t.deepEqual(lines, [], "nothing left: it says nothing");
});

test.serial(
  "a reindex cut off takes up after the pages it counted, with its resume_token; another merchant's token is refused",
  async (t) => {
    const merchant = await h.newMerchant();
    const catalog = h.catalog(merchant);
    for (let i = 0; i < 120; i += 30)
      await Promise.all(Array.from({ length: 30 }, (_, j) => catalog.createProduct({ product: productInit(sku(i + j)) })));
    // The client goes away after the second page (a lost connection, a server draining).
    const first: { read: bigint; token: string }[] = [];
    for await (const p of h.search(merchant).reindexProducts({})) {
      first.push({ read: p.productsRead, token: p.resumeToken });
      if (first.length === 2) break;
    }
    t.deepEqual(
      first.map((p) => p.read),
      [50n, 100n],
    );
    t.true(first.every((p) => p.token !== ""));
    const taken: { read: bigint; updated: bigint; done: boolean; token: string }[] = [];
    for await (const p of h.search(merchant).reindexProducts({ resumeToken: first[1]!.token }))
      taken.push({ read: p.productsRead, updated: p.productsUpdated, done: p.done, token: p.resumeToken });
    // Only the last page was read again, counted on from the first two: as a run that paused. (The server may have
    // reconciled that page before it saw the client go: then it is up to date, and not counted again.)
    t.like(taken, [{ read: 120n, done: true, token: "" }]);
    t.is(taken.length, 1);
    t.true(taken[0]!.updated === 120n || taken[0]!.updated === 100n, String(taken[0]!.updated));
    t.deepEqual(await searchState(merchant), await catalogState(merchant));

    const other = await h.newMerchant();
    for (const resumeToken of [
      first[1]!.token,
      "not-a-token",
      Buffer.from(JSON.stringify({ p: [null, "x", 1, 1, 1] })).toString("base64url"),
    ]) {
      const error = ConnectError.from(
        await t.throwsAsync(async () => {
          for await (const _ of h.search(other).reindexProducts({ resumeToken }));
        }),
      );
      t.is(error.code, Code.InvalidArgument);
      t.is(error.rawMessage, "resume_token: is not a resume_token that ReindexProducts returned to this merchant");
    }
  },
);

test.serial("a reindex while updates, creates and deletes flow ends with search equal to the catalog, row for row", async (t) => {
  const merchant = await h.newMerchant();
  const catalog = h.catalog(merchant);
  const count = 150;
  for (let i = 0; i < count; i += 25) {
    await Promise.all(Array.from({ length: 25 }, (_, j) => catalog.createProduct({ product: productInit(sku(i + j), { stock: i + j }) })));
  }
  // The projection saw the creates of the first 100 products, then lost every event (a stream that expired).
  const catalogDb = h.db;
  await upsertEntries(
    h.searchDb,
    (await listProducts(catalogDb, merchant.merchantId, { order: "sku", limit: 100 })).map((p) => entryFromProduct(merchant.merchantId, p)),
  );
  await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      catalog.updateProduct({ product: { sku: sku(i), title: `Renamed ${i}` }, updateMask: { paths: ["title"] } }),
    ),
  );
  await catalog.deleteProduct({ sku: sku(RESERVED) });
  await catalog.deleteProduct({ sku: sku(50) });
  await catalog.createProduct({ product: productInit(sku(50), { title: "Recreated" }) });
  // One autocommit per shard on Vitess (a statement on several shards is a transaction there otherwise).
  await sql`UPDATE /*vt+ MULTI_SHARD_AUTOCOMMIT=1 */ outbox_events SET published_at = NOW(3) WHERE published_at IS NULL`.execute(h.db);
  // And it holds a product the catalog never had any more.
  await upsertEntries(h.searchDb, [
    {
      ...entryFromProduct(merchant.merchantId, (await listProducts(catalogDb, merchant.merchantId, { order: "sku", limit: 1 }))[0]!),
      sku: "GHOST",
      product_id: newUlid(),
    },
  ]);
  t.notDeepEqual(await searchState(merchant), await catalogState(merchant));

  await h.startRelay();
  const projector = await h.startProjector();
  let writing = true;
  const changes = { updated: 0, created: 0, deleted: 0 };
  const writer = async (w: number) => {
    for (let n = 0; writing; n++) {
      const i = Math.floor(Math.random() * (count + 40));
      if (i === RESERVED) continue;
      try {
        if (n % 7 === 3) {
          await catalog.deleteProduct({ sku: sku(i) });
          changes.deleted++;
        } else if (i >= count || n % 5 === 0) {
          await catalog.createProduct({ product: productInit(sku(i), { title: `Created by writer ${w}` }) });
          changes.created++;
        } else {
          await catalog.updateProduct({
            product: { sku: sku(i), stock: n, title: `Writer ${w} edit ${n}` },
            updateMask: { paths: ["stock", "title"] },
          });
          changes.updated++;
        }
      } catch {
        // NOT_FOUND / ALREADY_EXISTS: the random target was not there (or was); the race is the point.
      }
    }
  };
  const writers = Promise.all([0, 1, 2, 3].map(writer));
  // Two rebuilds race each other and the live events: one over the API, one with small pages.
  let during = changes;
  const [viaRpc, paged] = await Promise.all([
    reindexOverRpc(merchant),
    (async () => {
      let last: ReindexProgress | undefined;
      for await (const p of reindexMerchant({ catalogDb, searchDb: h.searchDb, pageSize: 16 }, merchant.merchantId)) {
        last = p;
        await new Promise((r) => setTimeout(r, 40)); // a slow reader: the writers get ahead between pages
      }
      during = { ...changes };
      return last!;
    })(),
  ]);
  await new Promise((r) => setTimeout(r, 200)); // changes keep flowing after the rebuilds end
  writing = false;
  await writers;
  t.true(during.updated > 5 && during.created + during.deleted > 0, `changes during the rebuild: ${JSON.stringify(during)}`);
  t.true(viaRpc.done && paged.done);
  t.true(viaRpc.read >= count - 20 && paged.read >= count - 20, `read ${viaRpc.read} and ${paged.read}`);
  // Live events bring many products up to date before a rebuild reaches them, so only "some" is certain.
  t.true(viaRpc.updated > 0 && paged.updated > 0, `updated ${viaRpc.updated} and ${paged.updated}`);
  t.true(viaRpc.removed + paged.removed >= 2, "the ghost and the deleted product were removed");

  await waitFor("the relay to publish everything", async () => {
    const { rows } = await sql<{ n: number }>`SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL`.execute(h.db);
    return Number(rows[0]!.n) === 0 ? true : undefined;
  });
  await waitFor("the projector to apply everything", async () => ((await projector.lag()).pendingEvents === 0 ? true : undefined));
  t.deepEqual(await searchState(merchant), await catalogState(merchant), "every product, field for field");
  const ghost = await h.searchDb
    .selectFrom("search_documents")
    .select("deleted")
    .where("merchant_id", "=", merchant.merchantId)
    .where("sku", "=", "GHOST")
    .executeTakeFirst();
  t.is(ghost?.deleted, 1);

  const again = await reindexOverRpc(merchant);
  t.like(again, { updated: 0, removed: 0, done: true }, "a second rebuild finds nothing to do");
});

/** deletedBySku lists the merchant's search rows, SKU and deleted flag, by SKU. */
function deletedBySku(merchant: string) {
  return h.searchDb.selectFrom("search_documents").select(["sku", "deleted"]).where("merchant_id", "=", merchant).orderBy("sku").execute();
}

/** plainEntry is a search row for a product of the merchant's named by its SKU, nothing else of it mattering. */
function plainEntry(merchant: string, sku: string) {
  return entryFromProduct(merchant, {
    id: newUlid(),
    sku,
    title: sku,
    description: "",
    priceMinor: 1,
    currency: "EUR",
    stock: 1,
    status: "active",
    attributes: {},
    ...NO_MERCHANDISING,
    version: 1,
    createdAt: new Date(),
    updatedAt: new Date(),
  });
}

test.serial("a rebuild never marks deleted a row written after it started (a product created after its page was read)", async (t) => {
  const merchant = newUlid();
  const entry = (sku: string) => plainEntry(merchant, sku);
  await upsertEntries(h.searchDb, [entry("BEFORE")]);
  const startedAt = (await merchantClock(h.searchDb, merchant))!;
  await new Promise((r) => setTimeout(r, 5));
  await upsertEntries(h.searchDb, [entry("AFTER")]);
  t.is(await tombstone(h.searchDb, merchant, ["BEFORE", "AFTER"], startedAt), 1);
  t.deepEqual(await deletedBySku(merchant), [
    { sku: "AFTER", deleted: 0 },
    { sku: "BEFORE", deleted: 1 },
  ]);
});

test.serial(
  "the rebuild's start keeps the database clock's microseconds: a row written earlier in the same millisecond is older",
  async (t) => {
    const merchant = newUlid();
    const entry = (sku: string) => plainEntry(merchant, sku);
    await upsertEntries(h.searchDb, [entry("EARLIER"), entry("LATER")]);
    // Both written within one millisecond, on either side of the start (as a fast projector and a rebuild can).
    const stamp = (sku: string, at: string) =>
      h.searchDb
        .updateTable("search_documents")
        .set({ applied_at: sql`${at}` })
        .where("merchant_id", "=", merchant)
        .where("sku", "=", sku)
        .execute();
    await stamp("EARLIER", "2001-02-03 04:05:06.123100");
    await stamp("LATER", "2001-02-03 04:05:06.123900");
    const startedAt = "2001-02-03 04:05:06.123500" as DbClock;
    t.is(await tombstone(h.searchDb, merchant, ["EARLIER", "LATER"], startedAt), 1);
    t.deepEqual(await deletedBySku(merchant), [
      { sku: "EARLIER", deleted: 1 },
      { sku: "LATER", deleted: 0 },
    ]);
    // And the clock is read with them.
    t.regex((await merchantClock(h.searchDb, merchant))!, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$/);
  },
);
