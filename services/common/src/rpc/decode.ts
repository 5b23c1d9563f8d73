import { ScalarType, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { createAsyncIterable, type UniversalHandler, type UniversalServerRequest } from "@connectrpc/connect/protocol";
import { InvalidArgumentError } from "../errors.ts";

/**
 * Requests that cannot be decoded (bytes that are not protobuf, a string
 * field that is not UTF-8, JSON that does not fit the message) are the
 * caller's mistake: INVALID_ARGUMENT, counted like every other answer by the
 * interceptor chain (metrics, SLA recorder, traces).
 *
 * connect-es decodes a unary request before it runs any interceptor and
 * answers a binary decode failure with INTERNAL ("parse binary: …"), which
 * neither the metrics nor the SLA recorder ever see. So every unary handler
 * is wrapped (undecodableReplay): when a call failed before it entered the
 * interceptor chain with a decode error, the call is run again with an empty
 * message and the failure in its context values, and the innermost
 * interceptor (createDecodeInterceptor) throws the INVALID_ARGUMENT there,
 * after authentication, so the answer is shaped by each protocol's own
 * handler (Connect JSON error body, gRPC and gRPC-Web trailers) and counted
 * against the caller. Streamed requests are decoded while the handler reads
 * them, inside the chain: the decode interceptor maps their decode failures.
 */

/** CallState tracks whether a call reached the interceptor chain, and how its handler context ended. */
interface CallState {
  entered: boolean;
  aborted?: unknown;
}

const kCallState = createContextKey<CallState | undefined>(undefined);
const kDecodeFailure = createContextKey<ConnectError | undefined>(undefined);

/** createEnteredInterceptor marks that a call reached the chain; it must be the outermost interceptor. */
export function createEnteredInterceptor(): Interceptor {
  return (next) => (req) => {
    const state = req.contextValues.get(kCallState);
    if (state) state.entered = true;
    return next(req);
  };
}

/**
 * createDecodeInterceptor must be the innermost interceptor: it throws the
 * decode failure a replayed unary call carries, and turns decode failures of
 * streamed request messages into INVALID_ARGUMENT.
 */
export function createDecodeInterceptor(): Interceptor {
  return (next) => async (req) => {
    const failure = req.contextValues.get(kDecodeFailure);
    if (failure) throw undecodable(req.method.input, failure, req.contextValues.get(kBadField));
    if (!req.stream) return next(req);
    return next({ ...req, message: mapDecodeErrors(req.message, req.method.input) });
  };
}

/** requestGate watches each call's handler context, to learn the error it ended with. */
export function decodeRequestGate(context: HandlerContext): void {
  const state = context.values.get(kCallState);
  if (!state) return;
  context.signal.addEventListener("abort", () => (state.aborted ??= context.signal.reason), { once: true });
}

const kBadField = createContextKey<string | undefined>(undefined);

/** undecodableReplay wraps a unary handler so that decode failures are answered through the interceptor chain. */
export function undecodableReplay(handler: UniversalHandler): UniversalHandler {
  if (handler.method.methodKind !== "unary") return handler;
  const wrapped = async (req: UniversalServerRequest) => {
    const values = req.contextValues;
    if (!values) return handler(req); // the API server always gives each call its context values
    const state: CallState = { entered: false };
    values.set(kCallState, state);
    let badField: string | undefined;
    let body = req.body;
    if (isBinary(req) && isByteStream(body)) {
      // Keep the request bytes, to name the field that is not UTF-8 if the decode fails.
      const chunks: Uint8Array[] = [];
      const source = body;
      body = (async function* () {
        for await (const chunk of source) {
          chunks.push(chunk);
          yield chunk;
        }
      })();
      const res = await settle(await handler({ ...req, body }));
      if (state.entered || !isDecodeFailure(state.aborted)) return res;
      badField = findInvalidUtf8(handler.method.input, unframe(req, concat(chunks)));
    } else {
      const res = await settle(await handler(req));
      if (state.entered || !isDecodeFailure(state.aborted)) return res;
    }
    values.set(kDecodeFailure, state.aborted as ConnectError);
    values.set(kBadField, badField);
    values.set(kCallState, undefined);
    return settle(await handler(emptyRequest(req)));
  };
  return Object.assign(wrapped, {
    protocolNames: handler.protocolNames,
    allowedMethods: handler.allowedMethods,
    supportedContentType: handler.supportedContentType,
    requestPath: handler.requestPath,
    service: handler.service,
    method: handler.method,
  });
}

/** settle runs a unary response to its end (its body is short), so its outcome is known before anything is sent. */
async function settle(res: Awaited<ReturnType<UniversalHandler>>): Promise<Awaited<ReturnType<UniversalHandler>>> {
  if (!res.body) return res;
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body) chunks.push(chunk);
  const body = replay(chunks);
  settledBodies.set(body, chunks);
  return { ...res, body };
}

/** replay yields the chunks of a settled body (a native generator: cheaper per call than connect's down-levelled ones). */
async function* replay(chunks: Uint8Array[]): AsyncIterable<Uint8Array> {
  yield* chunks;
}

/** settledBodies are the response bodies settle made, with their chunks: run to their end already, so their headers and trailers are final. */
const settledBodies = new WeakMap<object, readonly Uint8Array[]>();

/** isSettled tells whether a response body was run to its end before being sent (every unary response of the API server). */
export function isSettled(body: unknown): boolean {
  return settledChunks(body) !== undefined;
}

/** settledChunks are the chunks of a settled response body (see isSettled), or undefined for any other body. */
export function settledChunks(body: unknown): readonly Uint8Array[] | undefined {
  return typeof body === "object" && body !== null ? settledBodies.get(body) : undefined;
}

function isDecodeFailure(reason: unknown): reason is ConnectError {
  return reason instanceof ConnectError && (reason.code === Code.Internal || reason.code === Code.InvalidArgument);
}

function isByteStream(body: UniversalServerRequest["body"]): body is AsyncIterable<Uint8Array> {
  return typeof body === "object" && body !== null && Symbol.asyncIterator in body;
}

function contentType(req: UniversalServerRequest): string {
  return (req.header.get("content-type") ?? "").toLowerCase();
}

function isGrpc(req: UniversalServerRequest): boolean {
  return contentType(req).startsWith("application/grpc");
}

function isBinary(req: UniversalServerRequest): boolean {
  if (req.method === "GET") return false;
  const ct = contentType(req);
  return isGrpc(req) ? !ct.includes("json") : ct.startsWith("application/proto");
}

/** unframe returns the message bytes of a uncompressed unary request (gRPC's one envelope, or Connect's body). */
function unframe(req: UniversalServerRequest, bytes: Uint8Array): Uint8Array | undefined {
  if (!isGrpc(req)) return req.header.get("content-encoding") ? undefined : bytes;
  if (bytes.length < 5 || bytes[0] !== 0) return undefined;
  const length = new DataView(bytes.buffer, bytes.byteOffset).getUint32(1);
  return bytes.subarray(5, 5 + length);
}

/** emptyRequest is the same call carrying an empty message, which always decodes. */
function emptyRequest(req: UniversalServerRequest): UniversalServerRequest {
  const header = new Headers(req.header);
  header.delete("content-length");
  if (req.method === "GET") {
    const url = new URL(req.url);
    url.searchParams.set("message", url.searchParams.get("encoding") === "json" ? "{}" : "");
    url.searchParams.delete("base64");
    url.searchParams.delete("compression");
    return { ...req, url: url.toString(), header, body: createAsyncIterable([]) };
  }
  if (isGrpc(req)) {
    // One uncompressed envelope of length zero.
    return { ...req, header, body: createAsyncIterable([new Uint8Array(5)]) };
  }
  header.delete("content-encoding");
  const empty = contentType(req).includes("json") ? new TextEncoder().encode("{}") : new Uint8Array(0);
  return { ...req, header, body: createAsyncIterable([empty]) };
}

async function* mapDecodeErrors<T>(source: AsyncIterable<T>, desc: DescMessage): AsyncIterable<T> {
  try {
    yield* source;
  } catch (error) {
    throw isDecodeFailure(error) ? undecodable(desc, error) : error;
  }
}

/** undecodable is the INVALID_ARGUMENT a request gets when it cannot be decoded as its message type. */
function undecodable(desc: DescMessage, failure: ConnectError, field?: string): InvalidArgumentError {
  if (failure.code === Code.InvalidArgument && !failure.rawMessage.startsWith("parse binary")) {
    return new InvalidArgumentError([], "MALFORMED_REQUEST", failure.rawMessage);
  }
  const cause = failure.rawMessage.replace(/^parse binary: /, "");
  if (field !== undefined) {
    const description = "is not valid UTF-8: string fields must be UTF-8 text (use a UTF-8 encoder)";
    return new InvalidArgumentError([{ field, description }], "MALFORMED_REQUEST", `${field}: ${description}`);
  }
  const message = /utf-8/i.test(cause)
    ? `the request is not a valid ${desc.typeName}: a string field is not valid UTF-8`
    : `the request is not a valid ${desc.typeName} (binary protobuf): ${cause}`;
  return new InvalidArgumentError([], "MALFORMED_REQUEST", message);
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function validUtf8(bytes: Uint8Array): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** findInvalidUtf8 walks the wire format for the first string field that is not UTF-8 and names it ("items[2].title"). */
function findInvalidUtf8(desc: DescMessage, bytes: Uint8Array | undefined, prefix = ""): string | undefined {
  if (!bytes) return undefined;
  try {
    const reader = new BinaryReader(bytes);
    const seen = new Map<number, number>();
    while (reader.pos < reader.len) {
      const [no, wireType] = reader.tag();
      const field = desc.fields.find((f) => f.number === no);
      if (!field || wireType !== WireType.LengthDelimited) {
        reader.skip(wireType, no);
        continue;
      }
      const data = reader.bytes();
      const index = seen.get(no) ?? 0;
      seen.set(no, index + 1);
      const path = `${prefix}${field.name}${field.fieldKind === "list" ? `[${index}]` : ""}`;
      const found = checkField(field, data, path);
      if (found) return found;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function checkField(field: DescField, data: Uint8Array, path: string): string | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return field.scalar === ScalarType.STRING && !validUtf8(data) ? path : undefined;
    case "list":
      if (field.listKind === "scalar") return field.scalar === ScalarType.STRING && !validUtf8(data) ? path : undefined;
      if (field.listKind === "message") return findInvalidUtf8(field.message, data, `${path}.`);
      return undefined;
    case "message":
      return findInvalidUtf8(field.message, data, `${path}.`);
    default:
      return undefined;
  }
}
