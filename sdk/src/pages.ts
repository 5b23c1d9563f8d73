/**
 * Async iterators over every paged list of the API (AIP-158): each walks the
 * page tokens, fetching the next page only when the loop reaches it, so
 * leaving the loop early costs nothing more. Every page is an ordinary call
 * of the client: deadline, retries and typed errors as for any call.
 */
import type { CallOptions, Client } from "@connectrpc/connect";
import type { BulkJob, BulkJobItem } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import type { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import type { Product, ProductChange } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import type {
  NotificationService,
  WebhookDelivery,
  WebhookEndpoint,
} from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
import type { Order } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import type { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import type { SearchResult, SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import type { ApiKey, ApiKeyService } from "@stockroom/sdk/gen/stockroom/account/v1/api_key_service_pb.js";

/** A paged list call: a request with a page token, a response with the next one. */
type PagedCall<Req, Res> = (request: Req, options?: CallOptions) => Promise<Res>;

/** ListRequest is a list call's request, every field optional; page_token, if set, is where to start. */
export type ListRequest<M> = M extends PagedCall<infer Req, unknown> ? Req : never;

/**
 * paginate yields the items of every page of a list call, from the request's
 * page_token (empty: the first page) until a page has no next_page_token.
 */
export async function* paginate<Req extends { pageToken?: string }, Res extends { nextPageToken: string }, T>(
  call: PagedCall<Req, Res>,
  request: Req,
  items: (response: Res) => readonly T[],
  options?: CallOptions,
): AsyncGenerator<T, void, undefined> {
  for (let pageToken = request.pageToken ?? ""; ; ) {
    const page = await call({ ...request, pageToken }, options);
    yield* items(page);
    pageToken = page.nextPageToken;
    if (pageToken === "") return;
  }
}

type Catalog = Client<typeof CatalogService>;
type Bulk = Client<typeof BulkJobService>;
type Orders = Client<typeof OrderService>;
type Notify = Client<typeof NotificationService>;
type Search = Client<typeof SearchService>;
type Keys = Client<typeof ApiKeyService>;

/** AllPages are the iterators of `client.all`: one per paged list, yielding items, not pages. */
export interface AllPages {
  /** Every product (CatalogService.ListProducts), filters as in the request. */
  products(request?: ListRequest<Catalog["listProducts"]>, options?: CallOptions): AsyncGenerator<Product, void, undefined>;
  /** One SKU's history, newest first (CatalogService.ListProductHistory). */
  productHistory(
    request: ListRequest<Catalog["listProductHistory"]>,
    options?: CallOptions,
  ): AsyncGenerator<ProductChange, void, undefined>;
  /** The merchant's audit entries, newest first (CatalogService.ListChanges). */
  changes(request?: ListRequest<Catalog["listChanges"]>, options?: CallOptions): AsyncGenerator<ProductChange, void, undefined>;
  /** Bulk jobs, newest first (BulkJobService.ListBulkJobs). */
  bulkJobs(request?: ListRequest<Bulk["listBulkJobs"]>, options?: CallOptions): AsyncGenerator<BulkJob, void, undefined>;
  /** One job's items, by line (BulkJobService.ListBulkJobItems). */
  bulkJobItems(request: ListRequest<Bulk["listBulkJobItems"]>, options?: CallOptions): AsyncGenerator<BulkJobItem, void, undefined>;
  /** Orders (OrderService.ListOrders). */
  orders(request?: ListRequest<Orders["listOrders"]>, options?: CallOptions): AsyncGenerator<Order, void, undefined>;
  /** Webhook endpoints (NotificationService.ListWebhookEndpoints). */
  webhookEndpoints(
    request?: ListRequest<Notify["listWebhookEndpoints"]>,
    options?: CallOptions,
  ): AsyncGenerator<WebhookEndpoint, void, undefined>;
  /** Webhook deliveries that exhausted their retries (NotificationService.ListDeadLetters). */
  deadLetters(request?: ListRequest<Notify["listDeadLetters"]>, options?: CallOptions): AsyncGenerator<WebhookDelivery, void, undefined>;
  /** Search results, ordered by SKU (SearchService.SearchProducts). */
  searchProducts(request: ListRequest<Search["searchProducts"]>, options?: CallOptions): AsyncGenerator<SearchResult, void, undefined>;
  /** The merchant's API keys, newest first, without secrets (ApiKeyService.ListApiKeys). */
  apiKeys(request?: ListRequest<Keys["listApiKeys"]>, options?: CallOptions): AsyncGenerator<ApiKey, void, undefined>;
}

export function allPages(c: { catalog: Catalog; bulk: Bulk; orders: Orders; notify: Notify; search: Search; keys: Keys }): AllPages {
  return {
    products: (request = {}, options) => paginate(c.catalog.listProducts, request, (r) => r.products, options),
    productHistory: (request, options) => paginate(c.catalog.listProductHistory, request, (r) => r.changes, options),
    changes: (request = {}, options) => paginate(c.catalog.listChanges, request, (r) => r.changes, options),
    bulkJobs: (request = {}, options) => paginate(c.bulk.listBulkJobs, request, (r) => r.jobs, options),
    bulkJobItems: (request, options) => paginate(c.bulk.listBulkJobItems, request, (r) => r.items, options),
    orders: (request = {}, options) => paginate(c.orders.listOrders, request, (r) => r.orders, options),
    webhookEndpoints: (request = {}, options) => paginate(c.notify.listWebhookEndpoints, request, (r) => r.endpoints, options),
    deadLetters: (request = {}, options) => paginate(c.notify.listDeadLetters, request, (r) => r.deadLetters, options),
    searchProducts: (request, options) => paginate(c.search.searchProducts, request, (r) => r.results, options),
    apiKeys: (request = {}, options) => paginate(c.keys.listApiKeys, request, (r) => r.keys, options),
  };
}
