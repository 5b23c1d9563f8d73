/**
 * The OpenAPI document is held to a live API process serving every service
 * (as `npm start` runs them): GET /openapi.json is fetched without a key,
 * validated as OpenAPI 3.1, and for one unary method of each service a
 * plain fetch() call is built from the document (path, content type, auth
 * scheme, request fields checked against the request schema) and its answer
 * validated against the document's response schema, strictly (no property
 * the document does not name). Errors are checked the same way.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import test from "ava";
import { validate as validateOpenApi } from "@readme/openapi-parser";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { DescService } from "@bufbuild/protobuf";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { NotificationService } from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import { ApiKeyService } from "@stockroom/sdk/gen/stockroom/account/v1/api_key_service_pb.js";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { apiKeysModule, openApiDocument } from "@stockroom/common/rpc";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { createLogger } from "@stockroom/common/observe";
import { startTestApi, testDatabaseUrl, waitFor, type TestApi, type TestMerchant, dropTestDatabase } from "@stockroom/common/testing";
import { DEFAULT_EVENT_STREAM, DEFAULT_RELAY, startOutboxRelay } from "@stockroom/events";
import { bulkModule, DEFAULT_QUEUE } from "@stockroom/bulk";
import { catalogModule } from "@stockroom/catalog";
import { notifyModule, parseNotifyConfig } from "@stockroom/notify";
import { ordersModule } from "@stockroom/orders";
import {
  createSearchWaiter,
  DEFAULT_PROJECTOR,
  openSearchDatabase,
  projectionLag,
  searchModule,
  startSearchProjector,
} from "@stockroom/search";
import type { StockroomTables } from "../tables.ts";

type Json = Record<string, unknown>;
const SERVICES: DescService[] = [CatalogService, BulkJobService, OrderService, NotificationService, SearchService, ApiKeyService];
const ORIGIN = "https://admin.example.com";
const root = path.resolve(import.meta.dirname, "..", "..");
const log = createLogger("openapi-test", "silent");

// One process with every service, its own databases, event stream and queue.
const suffix = randomBytes(4).toString("hex");
const events = { ...DEFAULT_EVENT_STREAM, stream: `EVENTS_OPENAPI_${suffix}`, subjectPrefix: `t_${suffix}`, maxAgeMs: 600_000 };
const queue = { ...DEFAULT_QUEUE, stream: `BULK_OPENAPI_${suffix}`, subjectPrefix: `t_${suffix}.openapi.chunk` };
const searchUrl = testDatabaseUrl("openapi_search");
let nats: NatsClient;
let searchDb: Awaited<ReturnType<typeof openSearchDatabase>>;
let api: TestApi<StockroomTables>;
const stoppers: (() => Promise<void>)[] = [];
/** The document as the live process serves it, and that first answer. */
let served: Response;
let doc: Json;
let paths: Record<string, { post: Json }>;
let components: { schemas: Record<string, Json>; securitySchemes: Record<string, Json>; responses: Record<string, Json> };

test.before(async () => {
  nats = await connectNats({ servers: process.env["TEST_NATS_URL"] ?? "127.0.0.1:4222", name: "openapi-test" });
  searchDb = await openSearchDatabase({ url: searchUrl, poolSize: 5, migrate: true });
  api = await startTestApi<StockroomTables>(
    "openapi",
    (db) => [
      catalogModule(db, { searchWaiter: createSearchWaiter(searchDb) }),
      bulkModule(db, { nats, queue }),
      ordersModule(db),
      notifyModule(db, parseNotifyConfig({})),
      apiKeysModule(db),
      searchModule(searchDb, { catalogDb: db, lag: () => projectionLag(nats.jsm, events.stream, DEFAULT_PROJECTOR.durable) }),
    ],
    { config: { corsOrigins: [ORIGIN] } },
  );
  const relay = await startOutboxRelay({
    db: api.api.db,
    nats,
    events,
    config: { ...DEFAULT_RELAY, pollMs: 5, failureBackoffMs: 100 },
    log,
  });
  stoppers.push(() => relay.stop());
  const projector = await startSearchProjector({ db: searchDb, nats, events, config: DEFAULT_PROJECTOR, log });
  stoppers.push(() => projector.stop());
  served = await fetch(`${api.url}/openapi.json`, { headers: { origin: ORIGIN } });
  doc = (await served.json()) as Json;
  paths = doc["paths"] as typeof paths;
  components = doc["components"] as typeof components;
  ajv.addSchema({ $id: "urn:stockroom:openapi", $defs: strict(components.schemas) });
});

test.after.always(async () => {
  for (const stop of stoppers) await stop();
  await api?.close();
  await searchDb?.destroy();
  await dropTestDatabase(searchUrl);
  for (const stream of [events.stream, queue.stream]) await nats?.jsm.streams.delete(stream).catch(() => {});
  await nats?.close();
});

/**
 * strict copies a schema with unevaluatedProperties: false on every object
 * that lists properties, so an answer with a field the document does not
 * name fails (the document itself leaves room for fields added later).
 */
function strict(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(strict);
  if (value === null || typeof value !== "object") return value;
  const out: Json = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = k === "$ref" && typeof v === "string" ? v.replace("#/components/schemas/", "#/$defs/") : strict(v);
  }
  if (out["type"] === "object" && "properties" in out && !("additionalProperties" in out)) out["unevaluatedProperties"] = false;
  return out;
}

const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false });
addFormats.default(ajv);
const int = (bits: number, signed: boolean) => ({
  type: "number" as const,
  validate: (n: number) => Number.isInteger(n) && (signed ? n >= -(2 ** (bits - 1)) && n < 2 ** (bits - 1) : n >= 0 && n < 2 ** bits),
});
ajv.addFormat("int32", int(32, true));
ajv.addFormat("uint32", int(32, false));
ajv.addFormat("int64", /^-?[0-9]+$/);
ajv.addFormat("uint64", /^[0-9]+$/);
ajv.addFormat("float", { type: "number", validate: () => true });
ajv.addFormat("double", { type: "number", validate: () => true });
ajv.addFormat("binary", true);
const validators = new Map<string, ValidateFunction>();

/** schemaOf compiles a schema of the document (a $ref or an inline schema), strictly. */
function schemaOf(schema: Json): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = validators.get(key);
  if (!v) {
    const s = strict(schema) as Json;
    v = ajv.compile(typeof s["$ref"] === "string" ? { $ref: `urn:stockroom:openapi${s["$ref"]}` } : { $defs: {}, ...rewrite(s) });
    validators.set(key, v);
  }
  return v;
}
function rewrite(s: Json): Json {
  return JSON.parse(JSON.stringify(s).replaceAll('"#/$defs/', '"urn:stockroom:openapi#/$defs/')) as Json;
}

function check(t: { fail(m: string): void; pass(): void }, v: ValidateFunction, value: unknown, what: string): void {
  if (v(value)) t.pass();
  else t.fail(`${what} does not match the document: ${ajv.errorsText(v.errors)}\n${JSON.stringify(value)}`);
}

/** operation finds a method's operation in the document by its operationId, as a client generator would. */
function operation(operationId: string): { path: string; op: Json } {
  for (const [p, item] of Object.entries(paths)) if (item.post["operationId"] === operationId) return { path: p, op: item.post };
  throw new Error(`no operation ${operationId} in the document`);
}

/**
 * call builds a plain HTTP request from the document: the operation's path,
 * the media type its requestBody names (the body must match that schema),
 * and the bearer scheme it requires; it returns the status and parsed body
 * with the schema the document gives for that status.
 */
async function call(t: Parameters<typeof check>[0], operationId: string, body: Json, merchant: TestMerchant | undefined) {
  const { path: p, op } = operation(operationId);
  const content = (op["requestBody"] as { content: Record<string, { schema: Json }> }).content;
  const [mediaType, media] = Object.entries(content)[0]!;
  check(t, schemaOf(media.schema), body, `${operationId}'s request`);
  const security = (op["security"] ?? doc["security"]) as Record<string, string[]>[];
  const scheme = components.securitySchemes[Object.keys(security[0]!)[0]!]!;
  const headers: Record<string, string> = { "content-type": mediaType };
  if (merchant && scheme["type"] === "http" && scheme["scheme"] === "bearer") headers["authorization"] = `Bearer ${merchant.apiKey}`;
  const res = await fetch(new URL(p, api.url), { method: "POST", headers, body: JSON.stringify(body) });
  const json = (await res.json()) as Json;
  let response = (op["responses"] as Record<string, Json>)[String(res.status)];
  if (typeof response?.["$ref"] === "string") response = components.responses[response["$ref"].split("/").pop()!];
  if (!response) throw new Error(`${operationId}: HTTP ${res.status} is not in the document: ${JSON.stringify(json)}`);
  const schema = (response["content"] as Record<string, { schema: Json }>)["application/json"]!.schema;
  check(t, schemaOf(schema), json, `${operationId}'s HTTP ${res.status} answer`);
  return { status: res.status, json, headers: res.headers };
}

test("GET /openapi.json answers without a key, with the APIs' CORS headers, and is valid OpenAPI 3.1", async (t) => {
  t.is(served.status, 200);
  t.regex(served.headers.get("content-type") ?? "", /^application\/json/);
  // The same CORS headers as an API call from that origin.
  const rpc = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/ListProducts`, {
    method: "POST",
    headers: { origin: ORIGIN, "content-type": "application/json", authorization: `Bearer ${api.merchantA.apiKey}` },
    body: "{}",
  });
  t.is(rpc.status, 200);
  for (const h of ["access-control-allow-origin", "access-control-expose-headers", "vary"]) {
    t.truthy(served.headers.get(h), h);
    t.is(served.headers.get(h), rpc.headers.get(h), h);
  }
  const preflight = await fetch(`${api.url}/openapi.json`, {
    method: "OPTIONS",
    headers: { origin: ORIGIN, "access-control-request-method": "GET" },
  });
  t.is(preflight.status, 204);
  t.is(preflight.headers.get("access-control-allow-origin"), ORIGIN);
  const other = await fetch(`${api.url}/openapi.json`, { headers: { origin: "https://evil.example" } });
  t.is(other.status, 200);
  t.is(other.headers.get("access-control-allow-origin"), null);
  // Revalidation by ETag.
  const etag = served.headers.get("etag");
  t.truthy(etag);
  t.is((await fetch(`${api.url}/openapi.json`, { headers: { "if-none-match": etag! } })).status, 304);

  const result = await validateOpenApi(structuredClone(doc) as never);
  t.true(result.valid, JSON.stringify(result));
  t.is(doc["openapi"], "3.1.0");
  // The validator does reject a broken document: a malformed parameter, a dangling reference.
  const malformed = structuredClone(doc) as typeof doc & { components: { parameters: Record<string, Json> } };
  delete malformed.components.parameters["ConnectTimeoutMs"]!["name"];
  t.false((await validateOpenApi(malformed as never)).valid);
  const dangling = structuredClone(doc) as typeof doc & { components: { schemas: Record<string, Json> } };
  delete dangling.components.schemas["stockroom.type.v1.Money"];
  t.false((await validateOpenApi(dangling as never)).valid);
});

test("the document is the committed, generated one and names every method of the five services, streaming ones as such", (t) => {
  t.deepEqual(doc, JSON.parse(readFileSync(path.join(root, "sdk/openapi/stockroom.openapi.json"), "utf8")));
  const expected = SERVICES.flatMap((s) => s.methods.map((m) => `/${s.typeName}/${m.name}`)).sort();
  t.deepEqual(Object.keys(paths).sort(), expected);
  for (const s of SERVICES) {
    for (const m of s.methods) {
      const op = paths[`/${s.typeName}/${m.name}`]!.post;
      const content = Object.keys((op["requestBody"] as { content: Json }).content);
      if (m.methodKind === "unary") {
        t.deepEqual(content, ["application/json"], m.name);
        t.is(op["x-connect-streaming"], undefined, m.name);
      } else {
        t.deepEqual(content, ["application/connect+json"], m.name);
        t.is(op["x-connect-streaming"], m.methodKind.replace("_streaming", ""), m.name);
      }
    }
  }
  t.false(Object.keys(paths).some((p) => p.startsWith("/grpc.")));
  t.deepEqual(components.securitySchemes["apiKey"], { ...components.securitySchemes["apiKey"], type: "http", scheme: "bearer" });
  t.deepEqual(doc["security"], [{ apiKey: [] }]);
  // Comments become descriptions.
  t.regex(String(components.schemas["stockroom.catalog.v1.Product"]!["description"]), /keyed by its SKU/);
});

test("a process serving some of the services documents only those", (t) => {
  const catalogOnly = openApiDocument([CatalogService.typeName]);
  t.true(Object.keys(catalogOnly["paths"] as Json).every((p) => p.startsWith("/stockroom.catalog.v1.CatalogService/")));
  t.is(Object.keys(catalogOnly["paths"] as Json).length, CatalogService.methods.length);
  const schemas = Object.keys((catalogOnly["components"] as { schemas: Json }).schemas);
  t.true(schemas.includes("stockroom.catalog.v1.Product"));
  t.false(schemas.some((s) => s.startsWith("stockroom.order.")));
  t.false(schemas.includes("connect.EndStreamMessage")); // the catalog has no streaming method
});

test("one unary method per service, called as plain HTTP + JSON from the document, answers as the document says", async (t) => {
  const m = api.merchantA;
  const sku = `OA-${suffix}`;
  // Catalog: int64 as a string, a map, an enum by name and timestamps in the answer.
  const created = await call(
    t,
    "CatalogService_CreateProduct",
    {
      product: { sku, title: "Enamel mug", price: { currencyCode: "EUR", minorUnits: "1250" }, stock: 5, attributes: { color: "blue" } },
      requestId: `req-${suffix}`,
    },
    m,
  );
  t.is(created.status, 200);
  const product = created.json["product"] as Json;
  t.is(product["version"], "1");
  t.is(product["status"], "PRODUCT_STATUS_ACTIVE");
  t.deepEqual(product["price"], { currencyCode: "EUR", minorUnits: "1250" });

  // Orders.
  const order = await call(t, "OrderService_CreateOrder", { requestId: `order-${suffix}`, lines: [{ sku, quantity: 2 }] }, m);
  t.is(order.status, 200);
  t.truthy((order.json["order"] as Json)["id"]);

  // Bulk jobs.
  const upload = await call(t, "BulkJobService_CreateUpload", { options: { format: "BULK_FILE_FORMAT_CSV" }, expectedSize: "100" }, m);
  t.is(upload.status, 200);
  t.is(((upload.json["upload"] as Json)["options"] as Json)["format"], "BULK_FILE_FORMAT_CSV");
  t.true(Date.parse(String((upload.json["upload"] as Json)["expireTime"])) > Date.now());

  // Webhooks.
  const hook = await call(
    t,
    "NotificationService_CreateWebhookEndpoint",
    { url: "https://hooks.example.com/stockroom", eventTypes: ["product.*"], description: "from the OpenAPI test" },
    m,
  );
  t.is(hook.status, 200);
  t.regex(String(hook.json["signingSecret"]), /^whsec_/);

  // API keys: the one this call is made with is listed as current.
  const keys = await call(t, "ApiKeyService_ListApiKeys", {}, m);
  t.is(keys.status, 200);
  t.true(((keys.json["keys"] as Json[] | undefined) ?? []).some((k) => k["current"] === true));

  // Search, once the projection has the product (the relay and projector run in this file).
  const found = await waitFor("the product in search", async () => {
    const r = await call(t, "SearchService_SearchProducts", { query: "enamel", minPrice: { currencyCode: "EUR", minorUnits: "1000" } }, m);
    const hits = (r.json["results"] as Json[] | undefined) ?? [];
    return hits.length > 0 ? hits : undefined;
  });
  t.is(found.length, 1);
});

test("errors answer with the status and schema the document gives them, google.rpc details included", async (t) => {
  // No key: unauthenticated, 401.
  const anonymous = await call(t, "CatalogService_GetProduct", { sku: "nope" }, undefined);
  t.is(anonymous.status, 401);
  t.is(anonymous.json["code"], "unauthenticated");
  // Bad input: invalid_argument, 400, with BadRequest field violations (and their JSON in debug).
  const bad = await call(
    t,
    "CatalogService_CreateProduct",
    { product: { sku: "", title: "", price: { currencyCode: "XX", minorUnits: "-1" } } },
    api.merchantA,
  );
  t.is(bad.status, 400);
  t.is(bad.json["code"], "invalid_argument");
  const details = bad.json["details"] as { type: string; debug: { fieldViolations: { field: string }[] } }[];
  const badRequest = details.find((d) => d.type === "google.rpc.BadRequest");
  t.truthy(badRequest);
  t.true(badRequest!.debug.fieldViolations.length >= 2);
  // Another merchant's product: not_found, 404.
  const missing = await call(t, "CatalogService_GetProduct", { sku: `OA-missing-${suffix}` }, api.merchantB);
  t.is(missing.status, 404);
  t.is(missing.json["code"], "not_found");
});
