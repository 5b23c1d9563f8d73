import test from "ava";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { ProductSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { createLogger } from "@stockroom/common/observe";
import { startApiServer } from "@stockroom/common/rpc";
import {
  ConflictError,
  createStockroomClient,
  RateLimitedError,
  StockroomError,
  UnavailableError,
  toStockroomError,
  type NodeClientOptions,
} from "../src/index.ts";
import { backoffMs, DEFAULT_RETRY, resolveRetry, retryDelayMs } from "../src/retry.ts";
import { isIdempotent } from "../src/transport.ts";
import { attemptRequestId, MAX_REQUEST_ID } from "../src/request-id.ts";

// The stockroom server cannot be made to refuse on cue (rate limits arrive
// with the orders work), so these tests run a real server on a real port
// (the project's one-port server, every protocol) whose catalog handlers
// fail as the SKU asks, and record every attempt.
const attempts = new Map<string, { requestId: string; at: number }[]>();
const fail = (message: string, code: Code, details: ConstructorParameters<typeof ConnectError>[3] = []) =>
  new ConnectError(message, code, undefined, details);
const info = (reason: string, metadata: Record<string, string> = {}) => ({
  desc: ErrorInfoSchema,
  value: { reason, domain: "stockroom", metadata },
});

function script(sku: string, requestId = ""): void {
  const seen = attempts.get(sku) ?? [];
  seen.push({ requestId, at: performance.now() });
  attempts.set(sku, seen);
  const n = seen.length;
  const [kind, times] = sku.split(":");
  if (n > Number(times ?? Infinity)) return;
  switch (kind) {
    case "unavailable":
      throw fail("try again", Code.Unavailable);
    case "limited":
      throw fail("slow down", Code.ResourceExhausted, [
        info("RATE_LIMITED"),
        { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(300) } },
      ]);
    case "quota":
      throw fail("quota used up", Code.ResourceExhausted, [info("QUOTA_EXCEEDED")]);
    case "conflict":
      throw fail("etag mismatch", Code.Aborted, [info("ETAG_MISMATCH", { current_etag: "p.7" })]);
  }
}

const server = await startApiServer({
  host: "127.0.0.1",
  port: 0,
  services: [CatalogService],
  interceptors: [],
  log: createLogger("retry-test", "silent"),
  routes(router: ConnectRouter) {
    router.service(CatalogService, {
      async createProduct(req) {
        script(req.product!.sku, req.requestId);
        return { product: create(ProductSchema, { sku: req.product!.sku }) };
      },
      async updateProduct(req) {
        script(req.product!.sku, req.requestId);
        return { product: create(ProductSchema, { sku: req.product!.sku }) };
      },
      async getProduct(req) {
        if (req.sku === "slow") await new Promise((r) => setTimeout(r, 1500));
        script(req.sku);
        return { product: create(ProductSchema, { sku: req.sku }) };
      },
    });
  },
});
test.after.always(() => server.close());

const fast = { initialDelayMs: 10, maxDelayMs: 40 };
const client = (transport: "grpc" | "connect", options: Partial<NodeClientOptions> = {}) =>
  createStockroomClient({ baseUrl: server.url, apiKey: "srk_test", transport, retry: fast, ...options });

for (const transport of ["grpc", "connect"] as const) {
  const key = (kind: string) => `${kind}-${transport}`;

  test(`${transport}: UNAVAILABLE is retried, and a mutation keeps the one request_id the SDK gave it`, async (t) => {
    const c = client(transport);
    const sku = `unavailable:2:${transport}`;
    const { product } = await c.catalog.createProduct({ product: { sku } });
    t.is(product!.sku, sku);
    const seen = attempts.get(sku)!;
    t.is(seen.length, 3);
    t.regex(seen[0]!.requestId, /^sdk-[0-9a-z]{26}$/);
    t.true(
      seen.every((a) => a.requestId === seen[0]!.requestId),
      "the same request_id on every attempt",
    );
    // The caller's own request_id is kept; the caller's request object is left as it was.
    const own = `unavailable:1:${key("own")}`;
    const request = { product: { sku: own }, requestId: "" };
    await c.catalog.createProduct(request);
    t.is(request.requestId, "");
    const mine = `unavailable:1:${key("mine")}`;
    await c.catalog.createProduct({ product: { sku: mine }, requestId: "mine-1" });
    t.deepEqual(
      attempts.get(mine)!.map((a) => a.requestId),
      ["mine-1", "mine-1"],
    );
  });

  test(`${transport}: RESOURCE_EXHAUSTED with RetryInfo waits at least the server's delay; without it, it is not retried`, async (t) => {
    const c = client(transport);
    const sku = `limited:1:${transport}`;
    await c.catalog.getProduct({ sku });
    const [first, second] = attempts.get(sku)!;
    t.true(second!.at - first!.at >= 300, `waited ${Math.round(second!.at - first!.at)} ms`);
    const quota = `quota:9:${transport}`;
    const e = await t.throwsAsync(c.catalog.getProduct({ sku: quota }));
    t.true(e instanceof RateLimitedError, String(e));
    t.is((e as RateLimitedError).retryDelayMs, undefined);
    t.is((e as RateLimitedError).reason, "QUOTA_EXCEEDED");
    t.is(attempts.get(quota)!.length, 1);
    const always = `limited:9:${transport}`;
    const limited = await t.throwsAsync(c.catalog.getProduct({ sku: always }, { timeoutMs: 5_000 }));
    t.true(limited instanceof RateLimitedError);
    t.is((limited as RateLimitedError).retryDelayMs, 300);
    t.is(attempts.get(always)!.length, DEFAULT_RETRY.maxAttempts);
  });

  test(`${transport}: ABORTED is an etag conflict, never retried`, async (t) => {
    const c = client(transport);
    const sku = `conflict:9:${transport}`;
    const e = await t.throwsAsync(c.catalog.updateProduct({ product: { sku, etag: "p.6" }, updateMask: { paths: ["title"] } }));
    t.true(e instanceof ConflictError, String(e));
    t.is((e as ConflictError).currentEtag, "p.7");
    t.is(attempts.get(sku)!.length, 1);
  });

  test(`${transport}: retries stop after maxAttempts, or at once with retry: false`, async (t) => {
    const c = client(transport);
    const sku = `unavailable:99:${transport}`;
    const e = await t.throwsAsync(c.catalog.getProduct({ sku }));
    t.true(e instanceof UnavailableError, String(e));
    t.true((e as UnavailableError).fromServer);
    t.is(attempts.get(sku)!.length, 4);
    const once = `unavailable:99:${key("once")}`;
    await t.throwsAsync(client(transport, { retry: false }).catalog.getProduct({ sku: once }));
    t.is(attempts.get(once)!.length, 1);
  });

  test(`${transport}: every unary call has a deadline (the client's default, or the call's own)`, async (t) => {
    const c = client(transport, { timeoutMs: 300 });
    const started = performance.now();
    const e = await t.throwsAsync(c.catalog.getProduct({ sku: "slow" }));
    t.true(e instanceof StockroomError);
    t.is((e as StockroomError).code, Code.DeadlineExceeded);
    t.true(performance.now() - started < 1200, "no retry past the deadline");
    const { product } = await c.catalog.getProduct({ sku: "slow" }, { timeoutMs: 5_000 });
    t.is(product!.sku, "slow");
  });
}

test("a refused connection is an UnavailableError, retried for reads", async (t) => {
  const c = createStockroomClient({ baseUrl: "http://127.0.0.1:1", apiKey: "k", retry: { ...fast, maxAttempts: 2 } });
  const e = await t.throwsAsync(c.catalog.getProduct({ sku: "x" }));
  t.true(e instanceof UnavailableError, String(e));
  t.false((e as UnavailableError).fromServer);
  c.close();
});

test("retry rules: which codes, which calls, how long", (t) => {
  const policy = resolveRetry({ initialDelayMs: 100, maxDelayMs: 1000 });
  const err = (code: Code, details: ConstructorParameters<typeof ConnectError>[3] = []) =>
    toStockroomError(Object.assign(new ConnectError("x", code, undefined, details), { isWireError: true }));
  const retryInfo = { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(250) } };
  t.is(retryDelayMs(err(Code.Unavailable), false, 0, policy), undefined, "not for a call that may not be repeated");
  t.not(retryDelayMs(err(Code.Unavailable), true, 0, policy), undefined);
  t.is(retryDelayMs(err(Code.DeadlineExceeded), false, 0, policy), undefined);
  t.is(retryDelayMs(err(Code.Aborted), true, 0, policy), undefined);
  t.is(retryDelayMs(err(Code.Internal), true, 0, policy), undefined);
  t.is(retryDelayMs(err(Code.ResourceExhausted), true, 0, policy), undefined, "a quota without RetryInfo");
  const d = retryDelayMs(err(Code.ResourceExhausted, [retryInfo]), false, 0, policy, () => 0.5);
  t.is(d, 250 + 50, "RetryInfo plus jitter, even for a call that may not be repeated: the server did not run it");
  t.is(retryDelayMs(err(Code.Unavailable), true, 3, policy), undefined, "attempts are bounded");
  t.is(
    backoffMs(policy, 0, () => 0.999),
    99,
  );
  t.is(
    backoffMs(policy, 10, () => 0.999),
    999,
    "capped at maxDelayMs",
  );
  t.is(
    backoffMs(policy, 10, () => 0),
    0,
    "full jitter",
  );
  // A transport failure (not from the server) counts as UNAVAILABLE, whatever code Node gave it.
  t.is(toStockroomError(new ConnectError("reset", Code.Aborted)).code, Code.Unavailable);
  t.true(toStockroomError(new ConnectError("reset", Code.Aborted)) instanceof UnavailableError);
  t.is(toStockroomError(new ConnectError("cancelled", Code.Canceled), true).code, Code.Canceled, "a cancel the caller asked for");
});

test("which calls are safe to repeat", (t) => {
  const m = (s: typeof CatalogService | typeof OrderService | typeof BulkJobService | typeof SearchService, name: string) =>
    s.methods.find((x) => x.name === name)!;
  t.true(isIdempotent(m(CatalogService, "GetProduct")));
  t.true(isIdempotent(m(SearchService, "SearchProducts")), "a read: retried after a dropped connection");
  t.true(isIdempotent(m(CatalogService, "UpdateProduct")), "has request_id");
  t.true(isIdempotent(m(OrderService, "CreateOrder")), "has request_id");
  t.true(isIdempotent(m(BulkJobService, "AppendUploadPart")), "idempotent by contract");
  t.false(isIdempotent(m(BulkJobService, "UploadBulkFile")), "a client stream cannot be replayed");
});

test("upload attempt ids derive from the caller's id and fit the server's limit", (t) => {
  t.is(attemptRequestId("abc", 0), "abc");
  t.is(attemptRequestId("abc", 2), "abc.2");
  const long = "x".repeat(MAX_REQUEST_ID);
  const derived = attemptRequestId(long, 12);
  t.true(derived.length <= MAX_REQUEST_ID);
  t.not(derived, attemptRequestId(`${"x".repeat(MAX_REQUEST_ID - 1)}y`, 12), "different ids stay different");
});
