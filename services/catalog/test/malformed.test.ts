import http2 from "node:http2";
import test from "ava";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetProductRequestSchema, UpdateProductRequestSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { productInit, startCatalog } from "./helpers.ts";

// Requests that cannot be decoded are the caller's mistake (INVALID_ARGUMENT),
// on every protocol, and are counted as such.
const api = await startCatalog("catalog_malformed");
test.after.always(() => api.close());
const auth = `Bearer ${api.merchantA.apiKey}`;
const BAD_UTF8 = [0xff, 0xfe, 0xff, 0xfe];

/** spoil replaces the UTF-8 bytes of marker inside an encoded message by bytes that are not UTF-8 (same length). */
function spoil(bytes: Uint8Array, marker: string): Uint8Array {
  const needle = new TextEncoder().encode(marker);
  const at = Buffer.from(bytes).indexOf(Buffer.from(needle));
  if (at < 0) throw new Error(`marker ${marker} not found`);
  const out = new Uint8Array(bytes);
  out.set(BAD_UTF8, at);
  return out;
}

const badSku = spoil(toBinary(GetProductRequestSchema, create(GetProductRequestSchema, { sku: "@@@@" })), "@@@@");
const badTitle = spoil(
  toBinary(
    UpdateProductRequestSchema,
    create(UpdateProductRequestSchema, { product: { sku: "S-1", title: "@@@@" }, updateMask: { paths: ["title"] } }),
  ),
  "@@@@",
);
const notProtobuf = new Uint8Array([0xff, 0xff, 0xff, 0xff]);

const envelope = (message: Uint8Array) => {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
};

async function connectBinary(method: string, body: Uint8Array, authorization = auth) {
  const res = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/proto", authorization },
    body: Buffer.from(body),
  });
  return {
    status: res.status,
    error: (await res.json()) as { code: string; message: string; details?: { type: string; debug: unknown }[] },
  };
}

/** grpcCall sends one raw gRPC request over HTTP/2 and returns the status trailers. */
function grpcCall(method: string, message: Uint8Array): Promise<{ status: string; message: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(api.url);
    session.on("error", reject);
    const stream = session.request({
      ":method": "POST",
      ":path": `/stockroom.catalog.v1.CatalogService/${method}`,
      "content-type": "application/grpc+proto",
      te: "trailers",
      authorization: auth,
    });
    let headers: http2.IncomingHttpHeaders = {};
    stream.on("response", (h) => (headers = h));
    stream.on("trailers", (h) => (headers = { ...headers, ...h }));
    stream.on("data", () => {});
    stream.on("end", () => {
      session.close();
      resolve({ status: String(headers["grpc-status"]), message: decodeURIComponent(String(headers["grpc-message"] ?? "")) });
    });
    stream.on("error", reject);
    stream.end(envelope(message));
  });
}

async function invalidArgumentCount(method: string): Promise<number> {
  const { values } = await api.api.metrics.rpcDuration.get();
  return values
    .filter((v) => v.labels["method"] === method && v.labels["code"] === "INVALID_ARGUMENT" && v.metricName?.endsWith("_count"))
    .reduce((n, v) => n + v.value, 0);
}

test.serial(
  "Connect binary: a string field that is not UTF-8 is INVALID_ARGUMENT naming the field, counted as a client error",
  async (t) => {
    const before = await invalidArgumentCount("GetProduct");
    const got = await connectBinary("GetProduct", badSku);
    t.is(got.status, 400);
    t.is(got.error.code, "invalid_argument");
    t.regex(got.error.message, /^sku: is not valid UTF-8/);
    t.deepEqual(
      (
        got.error.details?.find((d) => d.type === "google.rpc.BadRequest")?.debug as { fieldViolations: { field: string }[] } | undefined
      )?.fieldViolations.map((v) => v.field),
      ["sku"],
    );
    t.is(await invalidArgumentCount("GetProduct"), before + 1, "the metrics interceptor saw the call as INVALID_ARGUMENT");

    const nested = await connectBinary("UpdateProduct", badTitle);
    t.is(nested.status, 400);
    t.regex(nested.error.message, /^product\.title: is not valid UTF-8/);
  },
);

test.serial("Connect binary: bytes that are not protobuf are INVALID_ARGUMENT; without a credential, UNAUTHENTICATED first", async (t) => {
  const got = await connectBinary("GetProduct", notProtobuf);
  t.is(got.status, 400);
  t.is(got.error.code, "invalid_argument");
  t.regex(got.error.message, /not a valid stockroom\.catalog\.v1\.GetProductRequest/);
  const anonymous = await connectBinary("GetProduct", notProtobuf, "");
  t.is(anonymous.error.code, "unauthenticated");
});

test.serial("gRPC and gRPC-Web: undecodable requests are INVALID_ARGUMENT (status 3), and good ones still work", async (t) => {
  const sku = await grpcCall("GetProduct", badSku);
  t.is(sku.status, "3");
  t.regex(sku.message, /^sku: is not valid UTF-8/);
  const garbage = await grpcCall("GetProduct", notProtobuf);
  t.is(garbage.status, "3");
  const web = await fetch(`${api.url}/stockroom.catalog.v1.CatalogService/UpdateProduct`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", authorization: auth, "x-grpc-web": "1" },
    body: envelope(badTitle),
  });
  const trailer = Buffer.from(await web.arrayBuffer()).toString("latin1");
  t.regex(trailer, /grpc-status: ?3/);

  const client = api.client((await import("./helpers.ts")).CatalogService, api.merchantA);
  await client.createProduct({ product: productInit("MAL-1") });
  t.is((await client.getProduct({ sku: "MAL-1" })).product!.sku, "MAL-1");
  const ok = await grpcCall("GetProduct", toBinary(GetProductRequestSchema, create(GetProductRequestSchema, { sku: "MAL-1" })));
  t.is(ok.status, "0");
});
