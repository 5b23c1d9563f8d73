/**
 * The API server's bridge between Node's HTTP/2 compatibility objects and
 * connect-es's universal handlers, lean where every gRPC call passes:
 * connect-node's own (universalRequestFromNodeRequest and
 * universalResponseToNodeResponse) serve what this does not.
 *
 * - A call's abort signal fires when its stream closes, as connect-node's
 *   does, but a stream that closes without an error aborts with one shared
 *   AbortError: connect-node aborts with no reason, so Node built a
 *   DOMException, stack trace and all, for every call (about 20 µs, 6% of a
 *   health check's server CPU).
 * - The request body is the request stream itself, not a down-levelled
 *   async generator wrapped around it.
 * - A settled response (decode.ts: every unary one, run to its end before it
 *   is sent) is written at once: its headers, its chunks and its trailers,
 *   with no promise and listeners per chunk.
 */
import type http from "node:http";
import http2 from "node:http2";
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import type { UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { settledChunks } from "./decode.ts";
import { grpcPercentEncode } from "./grpc-message.ts";
import type { RateLimitedError } from "../errors.ts";
import { ERROR_DOMAIN } from "./rpc-errors.ts";

/** The reason a call's signal is aborted with when its stream closed without an error: made once, as it never differs. */
export const STREAM_CLOSED = new DOMException("This operation was aborted", "AbortError");

/** universalRequestFromHttp2 is connect-node's universalRequestFromNodeRequest for an HTTP/2 request (see the file's comment). */
export function universalRequestFromHttp2(req: http2.Http2ServerRequest, contextValues: ContextValues): UniversalServerRequest {
  const authority = req.authority;
  if (authority === undefined) throw new ConnectError("unable to determine request authority from Node.js server request", Code.Internal);
  const controller = new AbortController();
  req.once("close", () => controller.abort(resetError(req.stream.rstCode) ?? STREAM_CLOSED));
  return {
    httpVersion: req.httpVersion,
    method: req.method,
    url: new URL(req.url, `http://${authority}`).toString(),
    header: webHeaders(req.headers),
    body: req,
    signal: controller.signal,
    contextValues,
  };
}

/**
 * writeUniversalResponse writes a settled response over HTTP/2 at once (its
 * whole body is in memory already, so there is no backpressure to wait
 * for), any other through connect-node.
 */
export async function writeUniversalResponse(uRes: UniversalServerResponse, res: http.ServerResponse | http2.Http2ServerResponse) {
  const chunks = settledChunks(uRes.body);
  if (!chunks || !("stream" in res)) return universalResponseToNodeResponse(uRes, res as http.ServerResponse);
  if (res.stream.destroyed) return; // the client went away while the call ran
  res.writeHead(uRes.status, uRes.header && nodeHeaders(uRes.header));
  for (const chunk of chunks) res.write(chunk);
  if (uRes.trailer) res.addTrailers(nodeHeaders(uRes.trailer));
  res.end();
}

/** The gRPC code of each HTTP/2 RST_STREAM code that has one (gRPC's mapping, doc/PROTOCOL-HTTP2.md, as connect-node maps it). */
const RESET_CODES = new Map<number, Code>([
  ...[
    http2.constants.NGHTTP2_PROTOCOL_ERROR,
    http2.constants.NGHTTP2_INTERNAL_ERROR,
    http2.constants.NGHTTP2_FLOW_CONTROL_ERROR,
    http2.constants.NGHTTP2_SETTINGS_TIMEOUT,
    http2.constants.NGHTTP2_FRAME_SIZE_ERROR,
    http2.constants.NGHTTP2_COMPRESSION_ERROR,
    http2.constants.NGHTTP2_CONNECT_ERROR,
  ].map((rst) => [rst, Code.Internal] as const),
  [http2.constants.NGHTTP2_REFUSED_STREAM, Code.Unavailable],
  [http2.constants.NGHTTP2_CANCEL, Code.Canceled],
  [http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, Code.ResourceExhausted],
  [http2.constants.NGHTTP2_INADEQUATE_SECURITY, Code.PermissionDenied],
  [http2.constants.NGHTTP2_HTTP_1_1_REQUIRED, Code.PermissionDenied],
]);

/**
 * resetError is the error an HTTP/2 stream reset with rstCode means for a
 * call, or undefined for none (NO_ERROR, and STREAM_CLOSED, which gRPC
 * leaves unmapped).
 */
export function resetError(rstCode: number | undefined): ConnectError | undefined {
  const code = rstCode === undefined ? undefined : RESET_CODES.get(rstCode);
  return code === undefined ? undefined : new ConnectError(`http/2 stream closed with error code ${rstCode}`, code);
}

/** headerFields are a request's header fields as Headers' init, HTTP/2 pseudo-headers left out. */
export function headerFields(nodeHeaders: http2.IncomingHttpHeaders): [string, string][] {
  const fields: [string, string][] = [];
  for (const k in nodeHeaders) {
    if (k.startsWith(":")) continue;
    const v = nodeHeaders[k];
    if (v === undefined) continue;
    if (typeof v === "string") fields.push([k, v]);
    else for (const e of v) fields.push([k, e]);
  }
  return fields;
}

/** webHeaders is a request's headers as a Headers object, HTTP/2 pseudo-headers left out. */
export function webHeaders(nodeHeaders: http2.IncomingHttpHeaders): Headers {
  return new Headers(headerFields(nodeHeaders));
}

/**
 * respondWithError answers a gRPC call trailers-only: the response's header
 * fields (head), then the error's status, its message percent-encoded as
 * the gRPC spec says (grpc-message.ts) and its details, RetryInfo among
 * them, all in the one HEADERS frame. The fields go straight into the
 * frame's object (setTrailerStatus only sets and appends), with no Headers
 * made: an early refusal in a spike is answered this way.
 */
export function respondWithError(stream: http2.ServerHttp2Stream, head: http2.OutgoingHttpHeaders, error: ConnectError): void {
  const answer: http2.OutgoingHttpHeaders = { ":status": 200, ...head };
  const key = statusKey(error);
  const known = key === undefined ? undefined : statusFields.get(key);
  if (known) Object.assign(answer, known);
  else {
    const status: http2.OutgoingHttpHeaders = {};
    // setTrailerStatus names fields "Grpc-Status"; head's are lower case, as Node gives them.
    const fields = {
      set(name: string, value: string) {
        status[name.toLowerCase()] = value;
      },
      append(name: string, value: string) {
        const field = name.toLowerCase();
        const before = status[field] ?? answer[field];
        status[field] = before === undefined ? value : `${String(before)}, ${value}`;
      },
    };
    setTrailerStatus(fields as unknown as Headers, error);
    status["grpc-message"] = grpcPercentEncode(error.rawMessage);
    Object.assign(answer, status);
    if (key !== undefined) {
      if (statusFields.size >= MAX_REFUSAL_FIELDS) statusFields.clear();
      statusFields.set(key, status);
    }
  }
  if (!stream.destroyed) stream.respond(answer, { endStream: true });
}

/**
 * Encoded status fields (grpc-status, grpc-message, grpc-status-details-bin)
 * of recent errors answered trailers-only, by statusKey. Refusals repeat
 * themselves (a sold-out SKU's crowd gets the same INSUFFICIENT_STOCK), and
 * packing and encoding google.rpc.Status by reflection was a third of what
 * answering one cost the server.
 */
const statusFields = new Map<string, http2.OutgoingHttpHeaders>();

/**
 * statusKey names what an error's status fields are made of: its code,
 * message and details (each detail's type and value). Undefined, and never
 * cached, for an error with metadata (its own fields go out with the
 * status) or with details already encoded (from the wire).
 */
function statusKey(error: ConnectError): string | undefined {
  if (error.isWireError || !error.metadata.keys().next().done) return undefined;
  let key = `${error.code}\n${error.rawMessage}`;
  for (const detail of error.details) {
    if (!("desc" in detail)) return undefined;
    key += `\n${detail.desc.typeName}\n${JSON.stringify(detail.value, (_, v: unknown) => (typeof v === "bigint" ? `${v}n` : v))}`;
  }
  return key;
}

/** nodeHeaders is a Headers object as Node's outgoing headers (set-cookie, the one repeatable field, as a list). */
export function nodeHeaders(headers: Headers): http.OutgoingHttpHeaders {
  const o: http.OutgoingHttpHeaders = Object.create(null);
  headers.forEach((value, key) => {
    o[key] = value;
  });
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) o["set-cookie"] = cookies;
  return o;
}

/**
 * respondRateLimited answers a gRPC call refused for load trailers-only:
 * RESOURCE_EXHAUSTED with the status toConnectError gives a
 * RateLimitedError (ErrorInfo RATE_LIMITED, RetryInfo), its details encoded
 * by hand (rateLimitedStatusBin). In a spike most calls are answered this
 * way; through setTrailerStatus, packing and encoding google.rpc.Status by
 * reflection was a third of each refusal's CPU.
 */
export function respondRateLimited(stream: http2.ServerHttp2Stream, contentType: string, error: RateLimitedError): void {
  if (stream.destroyed) return;
  // Refusals in a spike repeat themselves (the same counts, the same delay): their encoded fields are kept.
  const key = `${error.retryAfterMs}\n${error.message}`;
  let fields = refusalFields.get(key);
  if (!fields) {
    if (refusalFields.size >= MAX_REFUSAL_FIELDS) refusalFields.clear();
    fields = { message: grpcPercentEncode(error.message), details: rateLimitedStatusBin(error) };
    refusalFields.set(key, fields);
  }
  stream.respond(
    {
      ":status": 200,
      "content-type": contentType,
      "grpc-status": RESOURCE_EXHAUSTED,
      "grpc-message": fields.message,
      "grpc-status-details-bin": fields.details,
    },
    { endStream: true },
  );
}

/** Encoded grpc-message and grpc-status-details-bin of recent refusals, by delay and message. */
const refusalFields = new Map<string, { message: string; details: string }>();
const MAX_REFUSAL_FIELDS = 1024;

const RESOURCE_EXHAUSTED = String(Code.ResourceExhausted);
const ANY_PREFIX = "type.googleapis.com/google.rpc.";
/** ErrorInfo's reason (1) and domain (2), the same in every refusal. */
const RATE_LIMITED_INFO = Buffer.concat([lengthDelimited(1, "RATE_LIMITED"), lengthDelimited(2, ERROR_DOMAIN)]);
const ERROR_INFO_URL = lengthDelimited(1, `${ANY_PREFIX}ErrorInfo`);
const RETRY_INFO_URL = lengthDelimited(1, `${ANY_PREFIX}RetryInfo`);

/**
 * rateLimitedStatusBin is grpc-status-details-bin of a RateLimitedError:
 * google.rpc.Status { code, message, details: [Any(ErrorInfo), Any(RetryInfo)] }
 * as toConnectError builds it, in protobuf-es's bytes (fields in number
 * order, zero and empty scalars left out, a set message field written even
 * when empty), base64 without padding. The test holds it equal to
 * setTrailerStatus's encoding.
 */
export function rateLimitedStatusBin(error: RateLimitedError): string {
  const ms = error.retryAfterMs;
  const retryAfter = String(ms);
  const errorInfo = Buffer.concat([
    RATE_LIMITED_INFO,
    lengthDelimited(3, Buffer.concat([lengthDelimited(1, "retry_after_ms"), lengthDelimited(2, retryAfter)])),
  ]);
  // durationFromMs: whole seconds and the rest in nanoseconds (the delay is whole milliseconds, never negative).
  const seconds = Math.floor(ms / 1000);
  const nanos = (ms % 1000) * 1_000_000;
  const retryInfo = lengthDelimited(1, Buffer.concat([varintField(1, seconds), varintField(2, nanos)]));
  const status = Buffer.concat([
    varintField(1, Code.ResourceExhausted),
    error.message === "" ? Buffer.alloc(0) : lengthDelimited(2, error.message),
    lengthDelimited(3, Buffer.concat([ERROR_INFO_URL, lengthDelimited(2, errorInfo)])),
    lengthDelimited(3, Buffer.concat([RETRY_INFO_URL, lengthDelimited(2, retryInfo)])),
  ]);
  return status.toString("base64").replace(/=+$/, "");
}

/** A length-delimited field (wire type 2): a string's UTF-8 or bytes. */
function lengthDelimited(field: number, value: string | Buffer): Buffer {
  const body = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  return Buffer.concat([Buffer.from([...varint((field << 3) | 2), ...varint(body.length)]), body]);
}

/** A varint field (wire type 0) of a non-negative integer; zero is left out, as proto3 leaves out a default. */
function varintField(field: number, value: number): Buffer {
  if (value === 0) return Buffer.alloc(0);
  if (value < 0 || !Number.isSafeInteger(value)) throw new RangeError(`cannot encode ${value} as a varint here`);
  return Buffer.from([...varint(field << 3), ...varint(value)]);
}

function varint(value: number): number[] {
  const bytes: number[] = [];
  let v = value;
  while (v > 0x7f) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return bytes;
}
