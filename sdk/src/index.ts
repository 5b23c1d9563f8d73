/**
 * @stockroom/sdk for Node: typed catalog, bulk job and order clients over
 * gRPC (default), Connect or gRPC-Web, with typed errors, safe retries and
 * bulk helpers. Browsers use "@stockroom/sdk/web".
 *
 * ```ts
 * import { createStockroomClient } from "@stockroom/sdk";
 * const stockroom = createStockroomClient({ baseUrl: "http://127.0.0.1:8080", apiKey: process.env.STOCKROOM_API_KEY! });
 * const job = await stockroom.uploadBulkFile("products.csv");
 * console.log(await stockroom.waitForBulkJob(job.id));
 * stockroom.close();
 * ```
 */
import http from "node:http";
import https from "node:https";
import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { assembleClient, authInterceptor, validateOptions, type ClientOptions, type StockroomClient } from "./client.ts";
import { nodeByteSource, type UploadSource } from "./node-sources.ts";

export * from "./public.ts";
export type { UploadSource } from "./node-sources.ts";

export interface NodeClientOptions extends ClientOptions {
  /** The protocol: "grpc" (default; HTTP/2), "connect" or "grpc-web". */
  transport?: "grpc" | "connect" | "grpc-web";
  /** HTTP version for "connect" and "grpc-web": "1.1" (default, passes any proxy) or "2". gRPC always uses HTTP/2. */
  httpVersion?: "1.1" | "2";
}

/** createStockroomClient returns a client for one merchant; close() it when done. */
export function createStockroomClient(options: NodeClientOptions): StockroomClient<UploadSource> {
  validateOptions(options);
  const protocol = options.transport ?? "grpc";
  if (!["grpc", "connect", "grpc-web"].includes(protocol))
    throw new TypeError(`transport must be "grpc", "connect" or "grpc-web", not ${JSON.stringify(protocol)}`);
  const httpVersion = protocol === "grpc" ? "2" : (options.httpVersion ?? "1.1");
  const interceptors = [authInterceptor(options.apiKey), ...(options.interceptors ?? [])];
  let transport: Transport;
  let close: () => void;
  if (httpVersion === "2") {
    // Node caps an HTTP/2 session's memory at 10 MB (its open streams, about 1 KB each, and the
    // frames not yet read or sent): an application with some ten thousand calls in flight, or too
    // busy to read their answers, had new streams reset (ENHANCE_YOUR_CALM) and the session torn
    // down, failing calls it had already sent. The application bounds its own calls, so the cap is
    // lifted here, as grpc-js does for its clients.
    const sessionManager = new Http2SessionManager(
      options.baseUrl,
      { idleConnectionTimeoutMs: 60_000 },
      { maxSessionMemory: Number.MAX_SAFE_INTEGER },
    );
    const common = { baseUrl: options.baseUrl, httpVersion: "2" as const, sessionManager, interceptors, useBinaryFormat: true };
    transport =
      protocol === "grpc"
        ? createGrpcTransport(common)
        : protocol === "connect"
          ? createConnectTransport(common)
          : createGrpcWebTransport(common);
    close = () => sessionManager.abort();
  } else {
    const agent = new (options.baseUrl.startsWith("https:") ? https.Agent : http.Agent)({ keepAlive: true });
    const common = { baseUrl: options.baseUrl, httpVersion: "1.1" as const, nodeOptions: { agent }, interceptors, useBinaryFormat: true };
    transport = protocol === "connect" ? createConnectTransport(common) : createGrpcWebTransport(common);
    close = () => agent.destroy();
  }
  return assembleClient<UploadSource>({
    transport,
    options,
    // Client streaming needs HTTP/2 end to end; the connect protocol could too, but gRPC is what the server's proxies expect.
    canStream: protocol === "grpc",
    toSource: nodeByteSource,
    close,
  });
}
