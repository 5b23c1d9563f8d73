/**
 * @stockroom/sdk for browsers (and other fetch runtimes): the same client as
 * the Node entry over Connect (default) or gRPC-Web, without Node imports.
 * Uploads use resumable parts, since fetch cannot stream a request body to
 * every server.
 *
 * ```ts
 * import { createStockroomClient } from "@stockroom/sdk/web";
 * const stockroom = createStockroomClient({ baseUrl: location.origin, apiKey: token });
 * const job = await stockroom.uploadBulkFile(fileInput.files[0], { onProgress: console.log });
 * ```
 */
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { assembleClient, authInterceptor, validateOptions, type ClientOptions, type StockroomClient } from "./client.ts";
import { byteSource, type WebUploadSource } from "./sources.ts";

export * from "./public.ts";

export interface WebClientOptions extends ClientOptions {
  /** The protocol: "connect" (default) or "grpc-web". */
  transport?: "connect" | "grpc-web";
  /** A fetch to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
}

/** createStockroomClient returns a client for one merchant. */
export function createStockroomClient(options: WebClientOptions): StockroomClient<WebUploadSource> {
  validateOptions(options);
  const protocol = options.transport ?? "connect";
  if (protocol !== "connect" && protocol !== "grpc-web")
    throw new TypeError(`transport must be "connect" or "grpc-web", not ${JSON.stringify(protocol)}`);
  const common = {
    baseUrl: options.baseUrl,
    interceptors: [authInterceptor(options.apiKey), ...(options.interceptors ?? [])],
    useBinaryFormat: true,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  };
  return assembleClient<WebUploadSource>({
    transport: protocol === "connect" ? createConnectTransport(common) : createGrpcWebTransport(common),
    options,
    canStream: false,
    toSource: byteSource,
    close: () => {},
  });
}
