import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { gunzipSync } from "node:zlib";
import test from "ava";
import { webAppHandler } from "@stockroom/common/rpc";

/** serve runs the handler on a loopback port; requests it does not answer get 418, standing in for the RPC router. */
async function serve(dir: string | undefined) {
  const handler = webAppHandler(dir);
  const server = http.createServer((req, res) => {
    if (!handler(req, res)) res.writeHead(418).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

test("the dashboard's page and hashed assets are served, with a strict CSP, and nothing else is taken from the API", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "stockroom-web-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(path.join(dir, "assets"));
  writeFileSync(path.join(dir, "index.html"), "<!doctype html><title>app</title>");
  const js = "console.log('dashboard');".repeat(100);
  writeFileSync(path.join(dir, "assets", "index-abc123.js"), js);
  const s = await serve(dir);
  t.teardown(s.close);

  const page = await fetch(`${s.url}/`);
  t.is(page.status, 200);
  t.is(await page.text(), "<!doctype html><title>app</title>");
  t.is(page.headers.get("cache-control"), "no-cache");
  t.regex(page.headers.get("content-security-policy") ?? "", /default-src 'self'.*connect-src 'self'.*frame-ancestors 'none'/);

  const raw = await new Promise<http.IncomingMessage>((resolve) =>
    http.get(`${s.url}/assets/index-abc123.js`, { headers: { "accept-encoding": "gzip" } }, resolve),
  );
  const chunks: Buffer[] = [];
  for await (const c of raw) chunks.push(c as Buffer);
  t.is(raw.headers["content-encoding"], "gzip");
  t.regex(raw.headers["cache-control"] ?? "", /immutable/);
  t.is(gunzipSync(Buffer.concat(chunks)).toString(), js);

  t.is((await fetch(`${s.url}/assets/missing.js`)).status, 404);
  // Not the dashboard's: the RPC router answers these.
  t.is((await fetch(`${s.url}/assets/%2e%2e%2findex.html`)).status, 418);
  t.is((await fetch(`${s.url}/`, { method: "POST" })).status, 418);
  t.is((await fetch(`${s.url}/stockroom.catalog.v1.CatalogService/GetProduct`, { method: "POST" })).status, 418);
  t.is((await fetch(`${s.url}/openapi.json`)).status, 418);
});

test("without a build, / says how to make one", async (t) => {
  const s = await serve(path.join(tmpdir(), "stockroom-web-none"));
  t.teardown(s.close);
  const page = await fetch(`${s.url}/`);
  t.is(page.status, 404);
  t.regex(await page.text(), /npm run build -w web/);
});
