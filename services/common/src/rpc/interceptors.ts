import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span, type TextMapGetter } from "@opentelemetry/api";
import { kPrincipal, type KeyVerifier } from "./auth.ts";
import type { Logger } from "../observe/log.ts";
import { tierLabel, type Metrics } from "../observe/metrics.ts";
import type { CallRecorder } from "../observe/sla.ts";
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
    trace.getActiveSpan()?.setAttributes({ "stockroom.merchant_id": principal.merchantId, "stockroom.merchant_tier": principal.tier });
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
      return { ...res, message: observeStream(res.message, (error) => endSpan(span, error)) };
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
  };
}

/**
 * createMetricsInterceptor times every call (a streamed one until its stream
 * ends) into the RPC latency histogram, labelled with the status code and
 * the caller's tier, counts RESOURCE_EXHAUSTED answers as rate-limit
 * rejections, and hands authenticated calls to the SLA recorder. It sits
 * outside the error interceptor, so it sees final status codes, and reads
 * the principal the auth interceptor (inside it) set. Health and reflection
 * calls are not user traffic and are left out.
 */
export function createMetricsInterceptor(metrics: Metrics, recorder?: CallRecorder): Interceptor {
  return (next) => async (req) => {
    if (PUBLIC_SERVICES.has(req.service.typeName)) return next(req);
    const started = performance.now();
    const done = (error?: unknown) => {
      const ms = performance.now() - started;
      const code = error === undefined ? undefined : ConnectError.from(error).code;
      const principal = req.contextValues.get(kPrincipal);
      const tier = tierLabel(principal?.tier);
      const labels = { service: req.service.typeName, method: req.method.name, tier };
      metrics.rpcDuration.observe({ ...labels, code: codeLabel(code) }, ms / 1000);
      if (code === Code.ResourceExhausted) metrics.rateLimitRejections.inc(labels);
      if (principal) recorder?.record(principal.merchantId, `${req.service.typeName}/${req.method.name}`, ms, code);
    };
    try {
      const res: UnaryResponse | StreamResponse = await next(req);
      if (!res.stream) {
        done();
        return res;
      }
      return { ...res, message: observeStream(res.message, done) };
    } catch (error) {
      done(error);
      throw error;
    }
  };
}

/** codeLabel names a status code as gRPC does: OK, INVALID_ARGUMENT, … */
function codeLabel(code: Code | undefined): string {
  return code === undefined ? "OK" : Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** observeStream calls done when the stream ends, fails, or is abandoned by its reader (CANCELED). */
async function* observeStream<T>(source: AsyncIterable<T>, done: (error?: unknown) => void): AsyncIterable<T> {
  let outcome: { error?: unknown } = { error: new ConnectError("stream abandoned", Code.Canceled) };
  try {
    yield* source;
    outcome = {};
  } catch (error) {
    outcome = { error };
    throw error;
  } finally {
    done(outcome.error);
  }
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

async function* mapStreamErrors<T>(source: AsyncIterable<T>, map: (e: unknown) => Error): AsyncIterable<T> {
  try {
    yield* source;
  } catch (error) {
    throw map(error);
  }
}
