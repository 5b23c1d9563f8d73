import path from "node:path";
import test from "ava";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { CatalogService, productInit, startCatalog } from "./helpers.ts";

// An independent client: grpc-js with proto-loader reading proto/ directly.
const api = await startCatalog("catalog_interop");
test.after.always(() => api.close());
const protoRoot = path.join(import.meta.dirname, "..", "..", "..", "proto");
const load = (file: string) =>
  grpc.loadPackageDefinition(
    protoLoader.loadSync(path.join(protoRoot, file), {
      keepCase: true,
      includeDirs: [protoRoot],
      longs: String,
      enums: String,
      defaults: true,
      oneofs: true,
    }),
  ) as any;
const target = new URL(api.url).host;
const insecure = grpc.credentials.createInsecure();

function unary<T>(client: any, method: string, request: unknown, metadata = new grpc.Metadata()): Promise<T> {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 5000 }, (err: grpc.ServiceError | null, res: T) =>
      err ? reject(err) : resolve(res),
    );
  });
}

test("grpc-js creates, reads and updates a product over plain gRPC", async (t) => {
  const { stockroom } = load("stockroom/catalog/v1/catalog_service.proto");
  const client = new stockroom.catalog.v1.CatalogService(target, insecure);
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${api.merchantA.apiKey}`);
  const created = await unary<any>(
    client,
    "CreateProduct",
    { product: { sku: "GRPC-1", title: "From grpc-js", price: { currency_code: "JPY", minor_units: "1500" }, stock: 3 } },
    md,
  );
  t.is(created.product.version, "1");
  t.is(created.product.price.minor_units, "1500");
  t.is(created.product.status, "PRODUCT_STATUS_ACTIVE");
  const read = await unary<any>(client, "GetProduct", { sku: "GRPC-1" }, md);
  t.is(read.product.etag, created.product.etag);
  const updated = await unary<any>(
    client,
    "UpdateProduct",
    { product: { sku: "GRPC-1", title: "Renamed", etag: created.product.etag }, update_mask: { paths: ["title"] } },
    md,
  );
  t.is(updated.product.title, "Renamed");
  t.is(updated.product.version, "2");
  const stale = await t.throwsAsync(
    unary(
      client,
      "UpdateProduct",
      { product: { sku: "GRPC-1", title: "Again", etag: created.product.etag }, update_mask: { paths: ["title"] } },
      md,
    ),
  );
  t.is((stale as grpc.ServiceError).code, grpc.status.ABORTED);
  t.truthy((stale as grpc.ServiceError).metadata.get("grpc-status-details-bin")[0], "google.rpc.Status details travel in the trailer");
  const anonymous = await t.throwsAsync(unary(client, "GetProduct", { sku: "GRPC-1" }));
  t.is((anonymous as grpc.ServiceError).code, grpc.status.UNAUTHENTICATED);
  client.close();
});

test("grpc-js shows error messages as plain text, not percent-encoded; Connect clients too", async (t) => {
  const { stockroom } = load("stockroom/catalog/v1/catalog_service.proto");
  const client = new stockroom.catalog.v1.CatalogService(target, insecure);
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${api.merchantA.apiKey}`);
  const bad = (await t.throwsAsync(
    unary(client, "CreateProduct", { product: { sku: "GRPC-MSG", title: "", price: { currency_code: "EUR", minor_units: "-1" } } }, md),
  )) as grpc.ServiceError;
  t.is(bad.code, grpc.status.INVALID_ARGUMENT);
  t.notRegex(bad.details, /%[0-9A-F]{2}/, "no percent-escapes left in the message");
  t.regex(bad.details, /title: /);
  // Non-ASCII survives both ways: a SKU with "é" and a "%" in a NOT_FOUND message.
  const missing = (await t.throwsAsync(unary(client, "GetProduct", { sku: "café-100%" }, md))) as grpc.ServiceError;
  t.is(missing.code, grpc.status.NOT_FOUND);
  t.true(missing.details.includes("café-100%"), missing.details);
  client.close();
  const connect = api.client(CatalogService, api.merchantA);
  const viaConnect = ConnectError.from(await t.throwsAsync(connect.getProduct({ sku: "café-100%" })));
  t.true(viaConnect.rawMessage.includes("café-100%"), viaConnect.rawMessage);
});

test("grpc-js health check answers SERVING without a credential", async (t) => {
  const { grpc: g } = load("grpc/health/v1/health.proto");
  const client = new g.health.v1.Health(target, insecure);
  t.is((await unary<any>(client, "Check", { service: "" })).status, "SERVING");
  t.is((await unary<any>(client, "Check", { service: "stockroom.catalog.v1.CatalogService" })).status, "SERVING");
  const unknown = await t.throwsAsync(unary(client, "Check", { service: "nope.Service" }));
  t.is((unknown as grpc.ServiceError).code, grpc.status.NOT_FOUND);
  client.close();
});

test("server reflection lists the services and serves their descriptors", async (t) => {
  const { grpc: g } = load("grpc/reflection/v1/reflection.proto");
  const client = new g.reflection.v1.ServerReflection(target, insecure);
  const call = client.ServerReflectionInfo();
  const responses: any[] = [];
  const done = new Promise<void>((resolve, reject) => {
    call.on("data", (r: unknown) => responses.push(r));
    call.on("end", resolve);
    call.on("error", reject);
  });
  call.write({ list_services: "" });
  call.write({ file_containing_symbol: "stockroom.catalog.v1.CatalogService.UpdateProduct" });
  call.write({ file_containing_symbol: "no.such.Symbol" });
  call.end();
  await done;
  const names = responses[0].list_services_response.service.map((s: { name: string }) => s.name);
  t.true(names.includes("stockroom.catalog.v1.CatalogService"));
  t.true(names.includes("stockroom.order.v1.OrderService") === false, "only the services this process serves");
  const files = responses[1].file_descriptor_response.file_descriptor_proto as Buffer[];
  t.true(files.some((f) => f.includes("stockroom/catalog/v1/catalog_service.proto")));
  t.true(
    files.some((f) => f.includes("google/protobuf/field_mask.proto")),
    "with its imports",
  );
  t.is(responses[2].error_response.error_code, grpc.status.NOT_FOUND);
  client.close();
});

test("a Connect call over HTTP/1.1 with JSON works with plain fetch", async (t) => {
  const res = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/CreateProduct`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${api.merchantA.apiKey}` },
    body: JSON.stringify({ product: { sku: "JSON-1", title: "Via JSON", price: { currencyCode: "EUR", minorUnits: "250" } } }),
  });
  t.is(res.status, 200);
  const body = (await res.json()) as { product: { sku: string; version: string; price: { minorUnits: string } } };
  t.is(body.product.sku, "JSON-1");
  t.is(body.product.version, "1");
  t.is(body.product.price.minorUnits, "250");
  const bad = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/CreateProduct`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${api.merchantA.apiKey}` },
    body: JSON.stringify({ product: { sku: "JSON-2", title: "x", price: { currencyCode: "EUR", minorUnits: "-1" } } }),
  });
  t.is(bad.status, 400);
  const error = (await bad.json()) as { code: string; details: { type: string; debug: unknown }[] };
  t.is(error.code, "invalid_argument");
  t.deepEqual(error.details.find((d) => d.type === "google.rpc.BadRequest")?.debug, {
    fieldViolations: [{ field: "product.price.minor_units", description: "must not be negative" }],
  });
});

test("a JSON request with a field the contract does not have is refused, not half applied", async (t) => {
  // A hand-written client's guess at the price's shape: without the check, the unknown keys were
  // dropped and the product created at a price of 0.
  const res = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/CreateProduct`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${api.merchantA.apiKey}` },
    body: JSON.stringify({ product: { sku: "JSON-UNKNOWN", title: "x", price: { currencyCode: "EUR", units: "19", nanos: 990000000 } } }),
  });
  t.is(res.status, 400);
  const error = (await res.json()) as { code: string; message: string };
  t.is(error.code, "invalid_argument");
  t.regex(error.message, /"units" is unknown/);
  const get = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/GetProduct`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${api.merchantA.apiKey}` },
    body: JSON.stringify({ sku: "JSON-UNKNOWN" }),
  });
  t.is(((await get.json()) as { code: string }).code, "not_found");
});

test("gRPC-Web over HTTP/1.1 (what browsers speak) works on the same port", async (t) => {
  const transport = createGrpcWebTransport({
    baseUrl: api.url,
    httpVersion: "1.1",
    interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${api.merchantB.apiKey}`), next(req))],
  });
  const client = createClient(CatalogService, transport);
  const { product } = await client.createProduct({ product: productInit("WEB-1") });
  t.is((await client.getProduct({ sku: "WEB-1" })).product!.etag, product!.etag);
});
