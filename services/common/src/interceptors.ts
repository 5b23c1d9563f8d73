import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter } from "@opentelemetry/api";
import { kPrincipal, type KeyVerifier } from "./auth.ts";
import type { Logger } from "./log.ts";
import { toConnectError } from "./rpc-errors.ts";

/** PUBLIC_SERVICES answer without a credential: probes and tooling. */
const PUBLIC_SERVICES = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** createErrorInterceptor turns domain errors, thrown or streamed, into statuses. */
export function createErrorInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    const procedure = `${req.service.typeName}/${req.method.name}`;
    try {
      const res = await next(req);
      if (!res.stream) return res;
      return { ...res, message: mapStreamErrors(res.message, (e) => toConnectError(e, log, procedure)) };
    } catch (error) {
      throw toConnectError(error, log, procedure);
    }
  };
}

/**
 * createAuthInterceptor resolves `authorization: Bearer <api key>` to the
 * Principal that handlers read from kPrincipal. The merchant always comes
 * from the credential, never from the request.
 */
export function createAuthInterceptor(verify: KeyVerifier): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
    const header = req.header.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) throw new ConnectError("missing credential: send `authorization: Bearer <api key>`", Code.Unauthenticated);
    const principal = await verify(m[1]!);
    req.contextValues.set(kPrincipal, principal);
    trace.getActiveSpan()?.setAttribute("stockroom.merchant_id", principal.merchantId);
    return next(req);
  };
}

const headerGetter: TextMapGetter<Headers> = {
  keys: (h) => [...h.keys()],
  get: (h, k) => h.get(k) ?? undefined,
};

/**
 * createTracingInterceptor opens a server span per call as a child of the
 * caller's W3C trace context, active while the handler runs so SQL and
 * publish spans nest under it. A streamed response ends the span when done.
 */
export function createTracingInterceptor(): Interceptor {
  const tracer = trace.getTracer("stockroom.rpc");
  return (next) => async (req) => {
    const parent = propagation.extract(context.active(), req.header, headerGetter);
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: { "rpc.system": "grpc", "rpc.service": req.service.typeName, "rpc.method": req.method.name },
      },
      parent,
    );
    try {
      const res: UnaryResponse | StreamResponse = await context.with(trace.setSpan(parent, span), () => next(req));
      if (!res.stream) {
        endSpan(span);
        return res;
      }
      return { ...res, message: traceStream(res.message, span) };
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  };
}

function endSpan(span: Span, error?: unknown): void {
  if (error !== undefined) {
    const code = ConnectError.from(error).code;
    span.setAttribute("rpc.grpc.status_code", code);
    span.setStatus({ code: SpanStatusCode.ERROR, message: Code[code] });
  } else {
    span.setAttribute("rpc.grpc.status_code", 0);
  }
  span.end();
}

async function* traceStream<T>(source: AsyncIterable<T>, span: Span): AsyncIterable<T> {
  try {
    yield* source;
    endSpan(span);
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
}

async function* mapStreamErrors<T>(source: AsyncIterable<T>, map: (e: unknown) => Error): AsyncIterable<T> {
  try {
    yield* source;
  } catch (error) {
    throw map(error);
  }
}
