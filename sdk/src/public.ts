/** What both entries export besides createStockroomClient. */
export { Code, ConnectError } from "@connectrpc/connect";
export {
  AlreadyExistsError,
  ConflictError,
  ERROR_DOMAIN,
  NotFoundError,
  PermissionError,
  PreconditionError,
  RateLimitedError,
  StockroomError,
  UnavailableError,
  ValidationError,
  toStockroomError,
  type FieldViolation,
  type PreconditionViolation,
} from "./errors.ts";
export { DEFAULT_RETRY, type RetryOptions } from "./retry.ts";
export { paginate, type AllPages, type ListRequest } from "./pages.ts";
export { DEFAULT_TIMEOUT_MS, type ClientOptions, type StockroomClient } from "./client.ts";
export {
  FINAL_STATES,
  isFinalState,
  type BulkJobUpdate,
  type ReportOptions,
  type ReportStream,
  type WaitOptions,
  type WatchOptions,
} from "./jobs.ts";
export { FINAL_ORDER_STATES, type WatchOrderOptions } from "./orders.ts";
export type { ReindexOptions } from "./search.ts";
export type { UploadBulkFileOptions, UploadProgress } from "./upload.ts";
export type { WebUploadSource } from "./sources.ts";
export { newRequestId } from "./request-id.ts";
export {
  BulkFileFormat,
  BulkItemOutcome,
  BulkJobFailure,
  BulkJobState,
  ConflictPolicy,
  type BulkJob,
  type BulkJobCounts,
  type BulkJobItem,
  type BulkJobProgress,
} from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
export { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
export { ProductStatus, type Product } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
export { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
export { OrderState, type Order } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
export { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
export {
  NotificationService,
  type WebhookDelivery,
  type WebhookEndpoint,
} from "@stockroom/sdk/gen/stockroom/notify/v1/notification_service_pb.js";
export {
  SearchService,
  type ReindexProductsResponse,
  type SearchResult,
} from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
export { ApiKeyService, type ApiKey } from "@stockroom/sdk/gen/stockroom/account/v1/api_key_service_pb.js";
export type { ProductChange } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
