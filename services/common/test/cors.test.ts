import test from "ava";
import { catalogModule } from "@stockroom/catalog";
import { parseCorsOrigins } from "../src/config.ts";
import { startTestApi } from "../testing/index.ts";

// A browser app on another origin calls the API with Connect (HTTP/1.1 POST + JSON), as Connect-Web does.
const APP = "https://admin.shop.example";
const api = await startTestApi("common_cors", (db) => [catalogModule(db)], { config: { corsOrigins: [APP] } });
test.after.always(() => api.close());
const method = `${api.url}/stockroom.catalog.v1.CatalogService/GetProduct`;

const preflight = (origin: string) =>
  fetch(method, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization,content-type,connect-protocol-version",
    },
  });

test("an allowed origin's preflight is answered with the methods and headers Connect-Web sends, Authorization included", async (t) => {
  const res = await preflight(APP);
  t.is(res.status, 204);
  t.is(res.headers.get("access-control-allow-origin"), APP);
  t.regex(res.headers.get("access-control-allow-methods") ?? "", /\bPOST\b/);
  const allowed = (res.headers.get("access-control-allow-headers") ?? "").toLowerCase().split(/,\s*/);
  for (const h of ["authorization", "content-type", "connect-protocol-version", "connect-timeout-ms", "x-grpc-web"])
    t.true(allowed.includes(h), h);
  t.truthy(res.headers.get("access-control-max-age"));
});

test("a call from an allowed origin carries Allow-Origin and exposes the gRPC-Web status headers; errors stay readable", async (t) => {
  const res = await fetch(method, {
    method: "POST",
    headers: {
      origin: APP,
      "content-type": "application/json",
      "connect-protocol-version": "1",
      authorization: `Bearer ${api.merchantA.apiKey}`,
    },
    body: JSON.stringify({ sku: "NOPE" }),
  });
  t.is(res.status, 404);
  t.is(res.headers.get("access-control-allow-origin"), APP);
  t.is(res.headers.get("vary"), "Origin");
  t.regex(res.headers.get("access-control-expose-headers") ?? "", /Grpc-Status/i);
  t.like(await res.json(), { code: "not_found" });
});

test("another origin gets no CORS headers, so the browser refuses it", async (t) => {
  const res = await preflight("https://evil.example");
  t.is(res.headers.get("access-control-allow-origin"), null);
  const call = await fetch(method, {
    method: "POST",
    headers: { origin: "https://evil.example", "content-type": "application/json" },
    body: "{}",
  });
  t.is(call.headers.get("access-control-allow-origin"), null);
});

test("CORS_ALLOWED_ORIGINS takes origins or *, and names what is wrong otherwise", (t) => {
  t.deepEqual(parseCorsOrigins(undefined), []);
  t.deepEqual(parseCorsOrigins(" https://a.example , http://localhost:5173 "), ["https://a.example", "http://localhost:5173"]);
  t.deepEqual(parseCorsOrigins("*"), ["*"]);
  t.throws(() => parseCorsOrigins("https://a.example/"), { message: /"https:\/\/a\.example\/" is not an origin/ });
  t.throws(() => parseCorsOrigins("a.example"), { message: /not an origin/ });
});
