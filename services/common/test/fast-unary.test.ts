/**
 * Unary gRPC calls served from their HTTP/2 stream (fast-unary.ts) answer
 * what connect-es answers. Each case is sent twice over raw HTTP/2: as is
 * (the fast path) and with an Origin header, which keeps a call on
 * connect-es's handler, and the two answers must agree on status, message,
 * details and response bytes.
 */
import http2 from "node:http2";
import { gunzipSync, gzipSync } from "node:zlib";
import test from "ava";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CatalogService,
  CreateProductRequestSchema,
  CreateProductResponseSchema,
  GetProductRequestSchema,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { catalogModule } from "@stockroom/catalog";
import { startTestApi } from "../testing/index.ts";

const api = await startTestApi("fast_unary", (db) => [catalogModule(db)]);
test.after.always(() => api.close());
const session = http2.connect(api.url);
test.after.always(() => session.close());
const authorization = `Bearer ${api.merchantA.apiKey}`;
const CREATE = `/${CatalogService.typeName}/${CatalogService.method.createProduct.name}`;
const GET = `/${CatalogService.typeName}/${CatalogService.method.getProduct.name}`;

interface Answer {
  /** The response HEADERS frame (a trailers-only answer carries the status here). */
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  data: Buffer;
}

function frame(message: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

function call(path: string, body: Buffer, headers: http2.OutgoingHttpHeaders = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      authorization,
      ...headers,
    });
    const answer: Answer = { headers: {}, trailers: {}, data: Buffer.alloc(0) };
    const chunks: Buffer[] = [];
    stream.on("response", (h) => (answer.headers = h));
    stream.on("trailers", (h) => (answer.trailers = h));
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", reject);
    stream.on("close", () => resolve({ ...answer, data: Buffer.concat(chunks) }));
    stream.end(body);
  });
}

/** both sends a call through the fast path and through connect-es (an Origin header keeps it there). */
async function both(path: string, body: () => Buffer, headers: http2.OutgoingHttpHeaders = {}) {
  const fast = await call(path, body(), headers);
  const connect = await call(path, body(), { ...headers, origin: "https://shop.example" });
  return { fast, connect };
}

/** status is an answer's gRPC status fields, wherever they came (trailers, or trailers-only headers). */
function status(a: Answer) {
  const fields = a.trailers["grpc-status"] !== undefined ? a.trailers : a.headers;
  return {
    code: fields["grpc-status"],
    message: fields["grpc-message"],
    details: fields["grpc-status-details-bin"],
  };
}

function product(sku: string, description = "") {
  return toBinary(
    CreateProductRequestSchema,
    create(CreateProductRequestSchema, {
      product: { sku, title: "Mug", description, price: { currencyCode: "EUR", minorUnits: 1250n }, stock: 3 },
    }),
  );
}

test("a call answers as connect-es answers it: the message and its trailers", async (t) => {
  let n = 0;
  const { fast, connect } = await both(CREATE, () => frame(product(`FAST-OK-${++n}`)));
  t.is(status(fast).code, "0");
  t.is(status(connect).code, "0");
  t.is(fast.headers["content-type"], connect.headers["content-type"]);
  const decoded = (a: Answer) => fromBinary(CreateProductResponseSchema, a.data.subarray(5)).product!;
  t.is(decoded(fast).sku, "FAST-OK-1");
  t.is(decoded(connect).sku, "FAST-OK-2");
  t.is(decoded(fast).title, decoded(connect).title);
  t.is(fast.data[0], 0);
});

test("an error is the same status, message and details, in one trailers-only HEADERS frame", async (t) => {
  const missing = () => frame(toBinary(GetProductRequestSchema, create(GetProductRequestSchema, { sku: "NOPE: not, here" })));
  const { fast, connect } = await both(GET, missing);
  t.is(status(fast).code, "5");
  t.deepEqual(status(fast), status(connect));
  t.is(fast.headers["grpc-status"], "5", "trailers-only");
  t.is(connect.headers["grpc-status"], undefined, "connect-es sends its status in trailers");
  t.true(String(status(fast).message).includes("NOPE: not, here"), "grpc-message is percent-encoded as the spec says: ':' and ',' stay");
});

test("a domain error with details (INVALID_ARGUMENT, field violations) matches byte for byte", async (t) => {
  const bad = () =>
    frame(
      toBinary(
        CreateProductRequestSchema,
        create(CreateProductRequestSchema, { product: { sku: "", title: "", price: { currencyCode: "eur", minorUnits: -1n } } }),
      ),
    );
  const { fast, connect } = await both(CREATE, bad);
  t.is(status(fast).code, "3");
  t.deepEqual(status(fast), status(connect));
  t.truthy(status(fast).details);
});

test("bytes that are not the message are INVALID_ARGUMENT through the whole chain, as before", async (t) => {
  const { fast, connect } = await both(CREATE, () => frame(Buffer.from([0xff, 0xff, 0xff, 0xff])));
  t.is(status(fast).code, "3");
  t.deepEqual(status(fast), status(connect));
});

test("not the common shape (two messages, a bad grpc-timeout, a compressed request) is answered by connect-es", async (t) => {
  let n = 0;
  const two = await both(CREATE, () => Buffer.concat([frame(product(`FAST-TWO-${++n}`)), frame(product(`FAST-TWO-${++n}`))]));
  t.not(status(two.fast).code, "0");
  t.deepEqual(status(two.fast), status(two.connect));

  const timeout = await both(CREATE, () => frame(product(`FAST-TO-${++n}`)), { "grpc-timeout": "soon" });
  t.is(status(timeout.fast).code, "3");
  t.deepEqual(status(timeout.fast), status(timeout.connect));

  const gzipped = await call(CREATE, frame(gzipSync(product("FAST-GZIP")), 1), { "grpc-encoding": "gzip" });
  t.is(status(gzipped).code, "0");
  t.is(fromBinary(CreateProductResponseSchema, gzipped.data.subarray(5)).product!.sku, "FAST-GZIP");
});

test("a response of 1 KiB or more is compressed when the client accepts it, as connect-es does", async (t) => {
  let n = 0;
  const long = "a mug ".repeat(400);
  const { fast, connect } = await both(CREATE, () => frame(product(`FAST-GZ-${++n}`, long)), { "grpc-accept-encoding": "gzip" });
  for (const a of [fast, connect]) {
    t.is(status(a).code, "0");
    t.is(a.headers["grpc-encoding"], "gzip");
    t.is(a.data[0], 1, "the compressed flag");
    t.is(fromBinary(CreateProductResponseSchema, gunzipSync(a.data.subarray(5))).product!.description, long);
  }
  const small = await call(CREATE, frame(product("FAST-SMALL")), { "grpc-accept-encoding": "gzip" });
  t.is(small.data[0], 0, "a short response goes uncompressed");
});

test("a call the server is still running when the client resets it is cancelled, and the server keeps serving", async (t) => {
  const stream = session.request({ ":method": "POST", ":path": CREATE, "content-type": "application/grpc", te: "trailers", authorization });
  stream.on("error", () => {});
  stream.write(frame(product("FAST-RESET")).subarray(0, 8)); // half a message, then gone
  stream.close(http2.constants.NGHTTP2_CANCEL);
  const after = await call(CREATE, frame(product("FAST-AFTER")));
  t.is(status(after).code, "0");
});
