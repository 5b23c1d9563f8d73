/**
 * `npm run reindex` (tools/reindex.ts, run as its own process) through a
 * catalog database that goes away: it waits and reindexes the merchant under
 * way again once the database is back, after its last page done; an outage longer than
 * REINDEX_RETRY_MS ends it with what is done and what to run, not a stack
 * trace. The catalog database is reached through a proxy taken away and
 * brought back.
 */
import test from "ava";
import path from "node:path";
import { runProcess, startDropProxy } from "@stockroom/common/testing";
import { productInit, startSearchHarness } from "./harness.ts";

const h = await startSearchHarness("reindex_tool");
const upstream = new URL(h.api.databaseUrl);
const proxy = await startDropProxy(`tcp://${upstream.hostname}:${upstream.port || 3306}`);
const proxied = new URL(upstream);
proxied.port = String(proxy.port);
test.after.always(async () => {
  await proxy.close();
  await h.close();
});

const tool = path.join(import.meta.dirname, "..", "..", "..", "tools", "reindex.ts");

/** reindex runs the tool for merchantId, its catalog database through the proxy. */
function reindex(merchantId: string, env: Record<string, string> = {}, onOutput?: (output: string) => void) {
  return runProcess(process.execPath, [tool, merchantId], {
    env: { DATABASE_URL: proxied.toString(), SEARCH_DATABASE_URL: h.searchUrl, ...env },
    onOutput,
  });
}

test.serial("a catalog database away for a few seconds: the reindex waits, then finishes", async (t) => {
  const merchant = await h.newMerchant();
  for (const sku of ["R-1", "R-2", "R-3"]) await h.catalog(merchant).createProduct({ product: productInit(sku) });
  await proxy.refuse();
  // Back once the tool has met the outage (a fixed wait raced a tool slow to start on a busy machine).
  let failedOnce: () => void = () => {};
  const failed = new Promise<void>((resolve) => (failedOnce = resolve));
  const running = reindex(merchant.merchantId, {}, (output) => {
    if (output.includes("retrying with backoff")) failedOnce();
  });
  await Promise.race([failed, running]);
  await new Promise((r) => setTimeout(r, 1_000));
  await proxy.accept();
  const { code, stdout: out, stderr: err } = await running;
  t.is(code, 0, err);
  t.regex(err, /reindex \(merchant \S+\) failed: the database is unavailable; retrying with backoff/);
  t.regex(out, /reindex \(merchant \S+\) resumed/);
  t.regex(out, new RegExp(`${merchant.merchantId}: 3 products read, 3 updated, 0 removed`));
  t.notRegex(err, /\n\s+at /, "no stack trace");
});

test.serial("a connection lost mid-merchant: the reindex takes up after the last page done, not from the start", async (t) => {
  const merchant = await h.newMerchant();
  const skus = ["RESUME-1", "RESUME-2", "RESUME-3", "RESUME-4", "RESUME-5"];
  for (const sku of skus) await h.catalog(merchant).createProduct({ product: productInit(sku) });
  // Pages of two: the second page's answer (RESUME-3 and 4) is cut on its way back.
  const dropsBefore = proxy.drops();
  const dropped = proxy.dropOnceOnResponse("RESUME-3");
  const { code, stdout: out, stderr: err } = await reindex(merchant.merchantId, { REINDEX_PAGE_SIZE: "2" });
  t.is(code, 0, err);
  await dropped;
  t.is(proxy.drops() - dropsBefore, 1);
  t.regex(out, new RegExp(`${merchant.merchantId}: taking up after SKU "RESUME-2"`));
  // From the start again, the first page would count as read twice and its two products as up to date (3 updated).
  t.regex(out, new RegExp(`${merchant.merchantId}: 5 products read, 5 updated, 0 removed`));
  const hits = await h.search(merchant).searchProducts({ pageSize: 10 });
  t.deepEqual(
    hits.results.map((r) => r.sku),
    skus,
  );
});

test.serial("a catalog database away for longer than REINDEX_RETRY_MS: a clear message and exit 1", async (t) => {
  const merchant = await h.newMerchant();
  await proxy.refuse();
  t.teardown(() => proxy.accept());
  const { code, stderr: err } = await reindex(merchant.merchantId, { REINDEX_RETRY_MS: "1500" });
  t.is(code, 1);
  t.regex(err, /reindex: stopped, the database is unavailable: .*\n {2}0 merchant\(s\) done; run it again/);
  t.notRegex(err, /\n\s+at /, "no stack trace");
});
