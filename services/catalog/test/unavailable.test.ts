/**
 * The database goes away under a running catalog server: a TCP proxy in
 * front of MariaDB stops listening and cuts every connection. Calls then
 * answer UNAVAILABLE with ErrorInfo BACKEND_UNAVAILABLE (retried with backoff
 * by clients and the SDK), not INTERNAL, both for a key the server knows and
 * for one it must read; once the proxy is back, the same server answers again.
 */
import test from "ava";
import { Code } from "@connectrpc/connect";
import { startDropProxy, startTestApi, waitFor } from "@stockroom/common/testing";
import { catalogModule } from "../src/module.ts";
import type { CatalogTables } from "../src/store.ts";
import { CatalogService, errorInfo, productInit, rejection, startCatalog } from "./helpers.ts";

const h = await startCatalog("unavailable");
const upstream = new URL(h.databaseUrl);
const proxy = await startDropProxy(`tcp://${upstream.hostname}:${upstream.port || 3306}`);
const proxied = new URL(h.databaseUrl);
proxied.hostname = "127.0.0.1";
proxied.port = String(proxy.port);
// A second server on the same (migrated) database, reaching it through the proxy.
const api = await startTestApi<CatalogTables>("unavailable", (db) => [catalogModule(db)], { databaseUrl: proxied.toString() });
test.after.always(async () => {
  await api.close();
  await proxy.close();
  await h.close();
});

test("calls answer UNAVAILABLE while the database is unreachable, and succeed again once it is back", async (t) => {
  const catalog = api.client(CatalogService, api.merchantA);
  await catalog.createProduct({ product: productInit("MUG") });

  await proxy.refuse();
  const read = await rejection(t, catalog.getProduct({ sku: "MUG" }), Code.Unavailable);
  t.is(read.rawMessage, "the database is unavailable; retry with backoff");
  t.is(errorInfo(read)?.reason, "BACKEND_UNAVAILABLE");
  t.is(errorInfo(read)?.metadata["backend"], "database");
  await rejection(t, catalog.updateProduct({ product: { sku: "MUG", stock: 3 }, updateMask: { paths: ["stock"] } }), Code.Unavailable);
  // A key the server has not read yet: authentication itself needs the database.
  const unseen = api.client(CatalogService, api.merchantB, "connect");
  await rejection(t, unseen.getProduct({ sku: "MUG" }), Code.Unavailable);

  await proxy.accept();
  const back = await waitFor("the server to reach the database again", () => catalog.getProduct({ sku: "MUG" }).catch(() => undefined));
  t.is(back.product?.stock, 10);
  const updated = await catalog.updateProduct({ product: { sku: "MUG", stock: 3 }, updateMask: { paths: ["stock"] } });
  t.is(updated.product?.stock, 3);
  await rejection(t, unseen.getProduct({ sku: "MUG" }), Code.NotFound);
});
