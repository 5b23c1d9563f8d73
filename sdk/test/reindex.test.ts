/**
 * The SDK's reindexProducts runs a search rebuild to its end through what
 * cuts a raw ReindexProducts stream off: a broken stream (failed by an
 * interceptor after a given message, where a real cut races the server,
 * which may have sent everything already), a server out of reach for a while
 * (a proxy that refuses connections). It takes the rebuild up with the last resume token,
 * so no page is counted twice and the counts go on, and gives up with the
 * token in its error when the server stays away.
 */
import test from "ava";
import { catalogModule } from "@stockroom/catalog";
import type { CatalogTables } from "@stockroom/catalog";
import { dropTestDatabase, startDropProxy, startTestApi, testDatabaseUrl } from "@stockroom/common/testing";
import { openSearchDatabase, searchModule } from "@stockroom/search";
import { Code, ConnectError, createStockroomClient, ProductStatus, StockroomError, type ReindexProductsResponse } from "../src/index.ts";

const searchUrl = testDatabaseUrl("sdk_reindex_search");
const searchDb = await openSearchDatabase({ url: searchUrl, poolSize: 4, migrate: true });
// Pages of 2 products: a rebuild of 9 sends 5 messages.
const api = await startTestApi<CatalogTables>("sdk_reindex", (db) => [
  catalogModule(db),
  searchModule(searchDb, { catalogDb: db, reindexPageSize: 2 }),
]);
const proxy = await startDropProxy(api.url);
test.after.always(async () => {
  await proxy.close();
  await api.close();
  await searchDb.destroy();
  await dropTestDatabase(searchUrl);
});

/** ReindexProducts calls opened, by every client here. */
let opened = 0;
/** failAfter: the next ReindexProducts stream fails (UNAVAILABLE, as a reset connection) after this many messages. */
let failAfter: number | undefined;
const client = (baseUrl: string, merchant = api.merchantA) =>
  createStockroomClient({
    baseUrl,
    apiKey: merchant.apiKey,
    interceptors: [
      (next) => async (req) => {
        if (req.method.name !== "ReindexProducts") return next(req);
        opened++;
        const res = await next(req);
        const limit = failAfter;
        failAfter = undefined;
        if (limit === undefined || !res.stream) return res;
        const messages = res.message;
        return {
          ...res,
          message: (async function* () {
            let n = 0;
            for await (const m of messages) {
              if (n++ === limit) throw new ConnectError("read ECONNRESET", Code.Unavailable);
              yield m;
            }
          })(),
        };
      },
    ],
  });

/** catalogOf gives a merchant n products titled "Rebuilt <i>". */
async function catalogOf(merchant: typeof api.merchantA, n: number): Promise<void> {
  const c = client(api.url, merchant);
  for (let i = 1; i <= n; i++) {
    await c.catalog.createProduct({
      product: {
        sku: `RB-${i}`,
        title: `Rebuilt ${i}`,
        price: { currencyCode: "EUR", minorUnits: 100n },
        stock: 1,
        status: ProductStatus.ACTIVE,
      },
    });
  }
  c.close();
}

const counts = (messages: ReindexProductsResponse[]) => messages.map((m) => [m.productsRead, m.productsUpdated, m.done]);

test.serial("a rebuild whose stream breaks goes on from its last message: each page counted once, to done", async (t) => {
  await catalogOf(api.merchantA, 9);
  const c = client(api.url);
  const seen: ReindexProductsResponse[] = [];
  const before = opened;
  failAfter = 2;
  for await (const progress of c.reindexProducts()) seen.push(progress);
  t.is(opened - before, 2, "opened again once, after the break");
  // Each message once, the counts going on from the last one yielded; pages the server rebuilt after it (before the
  // break reached it) are read again and found up to date, so they count as read, not updated.
  t.deepEqual(
    seen.map((m) => [m.productsRead, m.done]),
    [
      [2n, false],
      [4n, false],
      [6n, false],
      [8n, false],
      [9n, true],
    ],
  );
  t.deepEqual(counts(seen.slice(0, 2)), [
    [2n, 2n, false],
    [4n, 4n, false],
  ]);
  const found = await c.search.searchProducts({ query: "rebuilt", pageSize: 20 });
  t.is(found.results.length, 9, "every product is in search");
  t.deepEqual(counts(await Array.fromAsync(c.reindexProducts())).at(-1), [9n, 0n, true], "again: nothing behind");
  c.close();
});

test.serial(
  "a server out of reach longer than reconnectForMs: the error carries the token, which takes the rebuild up later",
  async (t) => {
    const merchant = api.merchantB;
    await catalogOf(merchant, 5);
    const c = client(proxy.url, merchant);
    const first: ReindexProductsResponse[] = [];
    const error = await t.throwsAsync(async () => {
      for await (const progress of c.reindexProducts({ reconnectForMs: 300 })) {
        first.push(progress);
        if (first.length === 1) await proxy.refuse();
      }
    });
    await proxy.accept();
    t.deepEqual(counts(first), [[2n, 2n, false]]);
    const token = /take it up with resumeToken "([^"]+)"/.exec(error.message)?.[1];
    t.is(token, first[0]!.resumeToken, error.message);
    // The server may have rebuilt past the last message the client saw before the way went: those products count as
    // read again, not as updated.
    const rest = await Array.fromAsync(c.reindexProducts({ resumeToken: token }));
    t.deepEqual(
      rest.map((m) => [m.productsRead, m.done]),
      [
        [4n, false],
        [5n, true],
      ],
    );
    t.true(rest.at(-1)!.productsUpdated >= 2n && rest.at(-1)!.productsUpdated <= 5n);
    const found = await c.search.searchProducts({ query: "rebuilt", pageSize: 20 });
    t.is(found.results.length, 5, "every product is in search");
    c.close();
  },
);

test("a token the server refuses fails at once, not retried", async (t) => {
  const c = client(api.url);
  const started = Date.now();
  const error = await t.throwsAsync(Array.fromAsync(c.reindexProducts({ resumeToken: "not-a-token" })));
  t.true(error instanceof StockroomError && error.code === Code.InvalidArgument, String(error));
  t.true(Date.now() - started < 2_000);
  c.close();
});
