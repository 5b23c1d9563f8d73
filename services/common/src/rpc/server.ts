import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createConnectRouter, createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { uResponseNotFound, type UniversalHandler } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest } from "@connectrpc/connect-node";
import { Health } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "@stockroom/sdk/gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionAlpha } from "@stockroom/sdk/gen/grpc/reflection/v1alpha/reflection_pb.js";
import { corsHandler } from "./cors.ts";
import { createDecodeInterceptor, createEnteredInterceptor, decodeRequestGate, undecodableReplay } from "./decode.ts";
import { grpcMessageAsSpecified } from "./grpc-message.ts";
import { HealthRegistry } from "./health.ts";
import { respondRateLimited, universalRequestFromHttp2, writeUniversalResponse } from "./node-http.ts";
import { createFastUnary, recordUnaryRoutes, type FastUnary, type UnaryRoute } from "./fast-unary.ts";
import type { Logger } from "../observe/log.ts";
import { withoutStacks, type RateLimitedError } from "../errors.ts";
import { openApiHandler } from "./openapi.ts";
import { registerReflection } from "./reflection.ts";
import { webAppHandler } from "./web-app.ts";
import { listen } from "../listen.ts";

export interface ApiServerOptions {
  host: string;
  port: number;
  /** The services this process exposes, for health and reflection. */
  services: DescService[];
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  log: Logger;
  /** How long close() waits for in-flight calls before cutting connections. */
  drainMs?: number;
  /** Aborted when close() starts: open server streams (watches) end, so they do not hold the drain for drainMs. */
  draining?: AbortController;
  /** Browser origins allowed to call cross-origin (cors.ts); none by default. */
  corsOrigins?: readonly string[];
  /** The dashboard's build, served at `/` (web-app.ts); false serves none. */
  webDir?: string | false;
  /**
   * shed may refuse a gRPC call before anything of it is decoded (see
   * dispatchStreams): given the call's path and its authorization header, it
   * returns the refusal to answer with, or undefined to serve the call.
   */
  shed?: (path: string, authorization: string | undefined) => RateLimitedError | undefined;
}

export interface ApiServer {
  url: string;
  port: number;
  health: HealthRegistry;
  /** Calls (and open streams) the server has received and not yet answered. */
  inFlight(): number;
  /** close flips health to NOT_SERVING, stops accepting, drains in-flight calls, then returns. */
  close(): Promise<void>;
}

/** MAX_REQUEST_MESSAGE_BYTES caps one request message (readMaxBytes): 4 MiB of data plus the rest of an upload part. */
export const MAX_REQUEST_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024;

/**
 * MAX_ROUTER_MESSAGE_BYTES is the same cap for the calls connect-es reads
 * (Connect, gRPC-Web, streams), whose messages may be JSON: there an upload
 * part's 4 MiB of data is 5.6 MB of base64, which the binary cap refused
 * (RESOURCE_EXHAUSTED) although the contract allows it. A binary message
 * that big is refused by its handler instead, naming the field.
 */
export const MAX_ROUTER_MESSAGE_BYTES = Math.ceil((4 * 1024 * 1024) / 3) * 4 + 64 * 1024;

/**
 * SESSION_MEMORY_MB is the memory one HTTP/2 connection may hold in Node's
 * own accounting (maxSessionMemory), which is mostly its open streams, about
 * 1 KB each. Node's default of 10 MB is reached by one client with some ten
 * thousand calls open at once: an internal service's single connection in a
 * spike, or a client too busy to read its answers. Past the cap Node resets
 * each new stream (ENHANCE_YOUR_CALM), and after 100 of those it tears the
 * whole session down: every call on it, admitted ones included, fails
 * INTERNAL (many-streams.test.ts saw 100 of 15,000
 * answered). Load beyond capacity is the bulkhead's to refuse, call by call
 * with RetryInfo; this cap stays only as a bound on a runaway or hostile
 * client, at some 60,000 open streams.
 */
export const SESSION_MEMORY_MB = 64;

/**
 * startApiServer serves gRPC, gRPC-Web and Connect on one cleartext port.
 * Each connection's first bytes decide its protocol: the HTTP/2 preface
 * ("PRI * HTTP/2.0") goes to an HTTP/2 server (gRPC clients, prior
 * knowledge), anything else to an HTTP/1.1 server (browsers, curl, Connect).
 * Node's http2 server alone cannot also speak HTTP/1.1 without TLS.
 * Besides the RPCs, GET /openapi.json answers with the OpenAPI document of
 * the Connect JSON endpoints of the services served (openapi.ts).
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const health = new HealthRegistry(options.services.map((s) => s.typeName));
  // Undecodable requests are INVALID_ARGUMENT, answered and counted through the whole chain (decode.ts).
  const interceptors = [createEnteredInterceptor(), ...options.interceptors, createDecodeInterceptor()];
  const acceptCompression = [compressionGzip, compressionBrotli];
  const router = createConnectRouter({
    interceptors,
    requestGate: decodeRequestGate,
    acceptCompression,
    // gRPC's customary cap: no request message of any API is near it except an upload part or
    // chunk, whose data the contracts limit to 4 MiB (the 64 KiB cover the rest of the message), in JSON
    // as base64 (MAX_ROUTER_MESSAGE_BYTES). A larger message is RESOURCE_EXHAUSTED before it is held in memory whole.
    readMaxBytes: MAX_ROUTER_MESSAGE_BYTES,
    // A JSON request naming a field the contract does not have is INVALID_ARGUMENT, as protobuf's JSON
    // mapping says, not the field dropped (connect-es's default): {"price": {"currencyCode": "EUR",
    // "units": "19"}} would otherwise create a product priced at 0. The SDK and the dashboard send binary.
    jsonOptions: { ignoreUnknownFields: false },
  });
  // Unary gRPC calls are served from their HTTP/2 stream (fast-unary.ts); the router's handlers serve the rest.
  const unary = new Map<string, UnaryRoute>();
  const recording = recordUnaryRoutes(router, unary);
  options.routes(recording);
  health.register(recording);
  registerReflection(router, [...options.services, Health, ServerReflection, ServerReflectionAlpha]);
  const paths = new Map<string, UniversalHandler>(router.handlers.map((h) => [h.requestPath, undecodableReplay(h)]));
  const fast = createFastUnary({
    routes: unary,
    interceptors,
    acceptCompression,
    readMaxBytes: MAX_REQUEST_MESSAGE_BYTES,
    handlers: paths,
    onError: (error, path) => options.log.error("rpc handler failed", { procedure: path, error }),
  });
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    const uHandler = paths.get(req.url?.split("?", 2)[0] ?? "");
    if (!uHandler) {
      (res as http.ServerResponse).writeHead(uResponseNotFound.status).end();
      return;
    }
    const uReq =
      "stream" in req
        ? universalRequestFromHttp2(req, createContextValues())
        : universalRequestFromNodeRequest(req, res, undefined, createContextValues());
    uHandler(uReq)
      .then((uRes) => writeUniversalResponse(grpcMessageAsSpecified(uRes, uReq.header), res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        options.log.error("rpc handler failed", { procedure: `${uHandler.service.typeName}/${uHandler.method.name}`, error: reason });
      });
  };

  let inFlight = 0;
  let drained: (() => void) | undefined;
  /** track counts a call in flight until its response (or stream) closes. */
  const track = (call: { once(event: "close", listener: () => void): unknown }) => {
    inFlight++;
    call.once("close", () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
  };
  const cors = corsHandler(options.corsOrigins ?? []);
  const openApi = openApiHandler(options.services.map((s) => s.typeName));
  const webApp = options.webDir === false ? () => false : webAppHandler(options.webDir);
  const counted = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
    if (cors(req, res)) return; // a preflight, answered
    if (openApi(req, res)) return; // GET /openapi.json, unauthenticated
    if (webApp(req, res)) return; // GET / and /assets/*: the dashboard, unauthenticated (it asks for a key itself)
    track(res);
    handler(req, res);
  };

  const h1 = http.createServer(counted);
  const h2 = http2.createServer({ maxSessionMemory: SESSION_MEMORY_MB }, counted);
  dispatchStreams(h2, options.shed, fast, track);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.once("data", (chunk: Buffer) => {
      socket.pause();
      socket.unshift(chunk);
      if (chunk.subarray(0, 3).toString("latin1") === "PRI") {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });
  await listen(
    server,
    options.port,
    options.host,
    `PORT ${options.port} is in use on ${options.host} (stop what holds it, or set PORT to another port; 0 = any free port)`,
  );
  const port = (server.address() as net.AddressInfo).port;
  const url = `http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`;

  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    health,
    inFlight: () => inFlight,
    close: () => (closing ??= drain()),
  };

  async function drain(): Promise<void> {
    options.draining?.abort();
    health.close();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sessions) s.close();
    h1.closeIdleConnections();
    if (inFlight > 0) {
      await Promise.race([
        new Promise<void>((resolve) => (drained = resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, options.drainMs ?? 10_000).unref()),
      ]);
    }
    if (inFlight > 0) options.log.warn("drain timed out; closing connections", { inFlight });
    for (const s of sockets) s.destroy();
    await closed;
  }
}

/**
 * dispatchStreams sees each HTTP/2 stream first, from the stream's own
 * event, before Node's compatibility layer builds its request and response
 * objects:
 * - A gRPC call that shed refuses is answered trailers-only (the status,
 *   its message and details, RetryInfo among them, in the one HEADERS
 *   frame), before it is routed, decoded, authenticated or traced. In an
 *   overload the refused calls are most of the traffic: answered through
 *   the whole chain each cost about a millisecond of the event loop, and at
 *   ten times capacity that alone saturated it and stalled the calls it had
 *   admitted. The other protocols (Connect, gRPC-Web, HTTP/1.1) take the
 *   ordinary path, where the handler refuses the same calls.
 * - A unary gRPC call the fast path takes is served from the stream
 *   (fast-unary.ts), counted in flight by track.
 *
 * Node serves the compatibility API ('request') from a 'stream' listener of
 * its own; it is moved behind this one, which passes every other stream on
 * to it unchanged.
 */
function dispatchStreams(
  h2: http2.Http2Server,
  shed: ApiServerOptions["shed"],
  fast: FastUnary,
  track: (stream: http2.ServerHttp2Stream) => void,
): void {
  const compat = h2.listeners("stream") as ((
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    ...rest: unknown[]
  ) => void)[];
  if (compat.length !== 1) throw new Error(`expected Node's one compatibility listener on the HTTP/2 server, found ${compat.length}`);
  const serve = compat[0]!;
  h2.removeListener("stream", serve);
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
    const contentType = headers["content-type"];
    const error =
      shed && contentType?.startsWith("application/grpc") && !contentType.startsWith("application/grpc-web")
        ? withoutStacks(() => shed(headers[":path"] ?? "", headers.authorization))
        : undefined;
    if (!error) {
      const route = fast.route(headers);
      if (!route) return serve.call(h2, stream, headers, ...rest);
      track(stream);
      return fast.serve(stream, headers, route);
    }
    stream.on("error", () => {}); // a client that already went away
    stream.resume(); // what is left of the request is read and dropped
    respondRateLimited(stream, contentType!, error);
  });
}
