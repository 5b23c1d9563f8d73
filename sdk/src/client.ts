/**
 * The client both entries return: the typed service clients over a
 * resilient transport, and the bulk helpers. The entries differ only in the
 * transport they build and the upload sources they read.
 */
import { createClient, type CallOptions, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import type { DescService } from "@bufbuild/protobuf";
import type { BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { NotificationService } from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import type { Order } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { type ReindexProductsResponse, SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { ApiKeyService } from "@stockroom/sdk/gen/stockroom/account/v1/api_key_service_pb.js";
import {
  downloadBulkJobReport,
  waitForBulkJob,
  watchBulkJob,
  type BulkJobUpdate,
  type ReportOptions,
  type ReportStream,
  type WaitOptions,
  type WatchOptions,
} from "./jobs.ts";
import { watchOrder, type WatchOrderOptions } from "./orders.ts";
import { reindexProducts, type ReindexOptions } from "./search.ts";
import { allPages, type AllPages } from "./pages.ts";
import { resolveRetry, type RetryOptions } from "./retry.ts";
import type { ByteSource } from "./sources.ts";
import { createCallGuard, createResilientTransport } from "./transport.ts";
import { uploadBulkFile, type UploadBulkFileOptions } from "./upload.ts";

/** DEFAULT_TIMEOUT_MS is the deadline of a unary call, retries included. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface ClientOptions {
  /** The API's address, e.g. "https://api.stockroom.example" or "http://127.0.0.1:8080". */
  baseUrl: string;
  /** The merchant API key ("srk_…"), or a function returning the current key or token. */
  apiKey: string | (() => string | Promise<string>);
  /** The deadline of every unary call in ms, retries included; 0 for none. Default 30,000. Per call: `{ timeoutMs }`. */
  timeoutMs?: number;
  /** Retry settings, or false for none. */
  retry?: RetryOptions | false;
  /** Extra connect interceptors, run on every attempt (e.g. for logging or tracing headers). */
  interceptors?: Interceptor[];
}

/** StockroomClient is what createStockroomClient returns; Source is what uploadBulkFile reads in this runtime. */
export interface StockroomClient<Source> {
  catalog: Client<typeof CatalogService>;
  bulk: Client<typeof BulkJobService>;
  orders: Client<typeof OrderService>;
  /** The webhook endpoints and dead letters of stockroom.notify.v1.NotificationService. */
  notify: Client<typeof NotificationService>;
  /** stockroom.search.v1.SearchService (served by the search API). */
  search: Client<typeof SearchService>;
  /** The merchant's own API keys: create, list, revoke (stockroom.account.v1.ApiKeyService). */
  keys: Client<typeof ApiKeyService>;
  /** Async iterators over every paged list, e.g. `for await (const p of client.all.products())`. */
  all: AllPages;
  /** uploadBulkFile uploads a CSV or JSON Lines file as a bulk job, each line exactly once; see UploadBulkFileOptions. */
  uploadBulkFile(source: Source, options?: UploadBulkFileOptions): Promise<BulkJob>;
  /** watchBulkJob yields the job on every change until a final state, reconnecting after network errors. */
  watchBulkJob(jobId: string, options?: WatchOptions): AsyncIterable<BulkJobUpdate>;
  /** waitForBulkJob resolves with the job in its final state. */
  waitForBulkJob(jobId: string, options?: WaitOptions): Promise<BulkJob>;
  /**
   * watchOrder yields the order at each state it reaches until FULFILLED,
   * CANCELLED or EXPIRED (or options.until), reconnecting after network
   * errors and after a server ends its watches to deploy.
   */
  watchOrder(orderId: string, options?: WatchOrderOptions): AsyncIterable<Order>;
  /**
   * reindexProducts rebuilds the merchant's search projection
   * (ReindexProducts), yielding its progress to the last message (done),
   * taking the rebuild up with its resume token after a dropped connection
   * or a server restart.
   */
  reindexProducts(options?: ReindexOptions): AsyncIterable<ReindexProductsResponse>;
  /** downloadBulkJobReport streams the per-item CSV report. */
  downloadBulkJobReport(jobId: string, options?: ReportOptions): ReportStream;
  /** close ends the client's connections; calls after it fail. */
  close(): void;
}

/** authInterceptor sends the API key as a bearer token on every attempt. */
export function authInterceptor(apiKey: ClientOptions["apiKey"]): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${typeof apiKey === "function" ? await apiKey() : apiKey}`);
    return next(req);
  };
}

export function validateOptions(options: ClientOptions): void {
  if (typeof options.baseUrl !== "string" || !/^https?:\/\//.test(options.baseUrl)) {
    throw new TypeError(`baseUrl must be an http:// or https:// URL, not ${JSON.stringify(options.baseUrl)}`);
  }
  if (typeof options.apiKey !== "function" && (typeof options.apiKey !== "string" || options.apiKey === "")) {
    throw new TypeError("apiKey is required");
  }
  if (options.timeoutMs !== undefined && (!Number.isFinite(options.timeoutMs) || options.timeoutMs < 0)) {
    throw new RangeError("timeoutMs must be a number of ms ≥ 0");
  }
}

/** assembleClient builds the client over a transport (auth and the caller's interceptors already in it). */
export function assembleClient<Source>(parts: {
  transport: Transport;
  options: ClientOptions;
  canStream: boolean;
  toSource: (source: Source) => ByteSource;
  close: () => void;
}): StockroomClient<Source> {
  const retry = resolveRetry(parts.options.retry);
  const transport = createResilientTransport(parts.transport, {
    timeoutMs: parts.options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    retry,
  });
  const bulk = cancellableStreams(BulkJobService, createClient(BulkJobService, transport));
  const deps = { bulk, retry, canStream: parts.canStream };
  const orders = cancellableStreams(OrderService, createClient(OrderService, transport));
  const services = {
    catalog: cancellableStreams(CatalogService, createClient(CatalogService, transport)),
    bulk,
    orders,
    notify: cancellableStreams(NotificationService, createClient(NotificationService, transport)),
    search: cancellableStreams(SearchService, createClient(SearchService, transport)),
    keys: cancellableStreams(ApiKeyService, createClient(ApiKeyService, transport)),
  };
  return {
    ...services,
    all: allPages(services),
    uploadBulkFile: (source, options) => uploadBulkFile(deps, parts.toSource(source), options),
    watchBulkJob: (jobId, options) => watchBulkJob(deps, jobId, options),
    waitForBulkJob: (jobId, options) => waitForBulkJob(deps, jobId, options),
    downloadBulkJobReport: (jobId, options) => downloadBulkJobReport(deps, jobId, options),
    watchOrder: (orderId, options) => watchOrder({ orders, retry }, orderId, options),
    reindexProducts: (options) => reindexProducts({ search: services.search, retry }, options),
    close: parts.close,
  };
}

/**
 * cancellableStreams makes a server stream that the caller stops reading
 * (a `break` out of `for await`) cancel its call: connect's own iterables
 * omit return(), so the call would otherwise run on until the server ends it.
 */
function cancellableStreams<S extends DescService>(service: S, client: Client<S>): Client<S> {
  const methods = client as unknown as Record<string, (input: unknown, options?: CallOptions) => unknown>;
  for (const method of service.methods) {
    if (method.methodKind !== "server_streaming") continue;
    const call = methods[method.localName] as (input: unknown, options?: CallOptions) => AsyncIterable<unknown>;
    methods[method.localName] = (input: unknown, options: CallOptions = {}) => {
      return (async function* () {
        const guard = createCallGuard(options.signal, undefined);
        try {
          yield* call(input, { ...options, signal: guard.signal });
        } finally {
          guard.release();
        }
      })();
    };
  }
  return client;
}
