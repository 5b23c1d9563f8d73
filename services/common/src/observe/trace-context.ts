/**
 * Trace context that outlives a call: stored with a row (an outbox event, a
 * bulk job) so work done later, in another process, joins the trace of the
 * call that caused it.
 */
import { context, createContextKey, propagation, ROOT_CONTEXT, trace, type Context, type Link } from "@opentelemetry/api";

/**
 * serializeTraceContext returns ctx's W3C trace context (traceparent and
 * tracestate) as JSON for a VARCHAR column, or null when there is no span
 * (tracing off). appendOutbox (@stockroom/events) writes outbox_events.trace_context this way.
 */
export function serializeTraceContext(ctx: Context = context.active()): string | null {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return Object.keys(carrier).length > 0 ? JSON.stringify(carrier) : null;
}

/**
 * restoreTraceContext turns a stored context back into a parent: pass it as
 * the context of startSpan, or as publishWithId's parent. It returns
 * undefined when there is nothing usable (NULL, unreadable, tracing off), so
 * callers fall back to the active context.
 */
export function restoreTraceContext(stored: string | null | undefined): Context | undefined {
  if (!stored) return undefined;
  let carrier: unknown;
  try {
    carrier = JSON.parse(stored);
  } catch {
    return undefined;
  }
  if (carrier === null || typeof carrier !== "object") return undefined;
  const ctx = propagation.extract(ROOT_CONTEXT, carrier as Record<string, string>);
  const span = trace.getSpanContext(ctx);
  return span && trace.isSpanContextValid(span) ? ctx : undefined;
}

/**
 * linkToActive returns a link to the span active now when it is real and not
 * the parent itself: work parented to a stored context (a chunk published
 * by a worker or the reconciler) still points at what actually caused it.
 */
export function linkToActive(parent: Context): Link[] {
  const active = trace.getSpanContext(context.active());
  const parentSpan = trace.getSpanContext(parent);
  if (!active || !trace.isSpanContextValid(active) || active.spanId === parentSpan?.spanId) return [];
  return [{ context: active }];
}

/**
 * The OpenTelemetry SDK records no span under a context holding this key
 * (it is @opentelemetry/core's suppressTracing key; createContextKey returns
 * Symbol.for(description), so this is the same key without loading the SDK).
 */
const SUPPRESS_TRACING = createContextKey("OpenTelemetry SDK Context Key SUPPRESS_TRACING");

/**
 * untraced runs fn without recording spans: periodic maintenance (health
 * probes, metric scrapes, statistics flushes, reconciler sweeps) would
 * otherwise add a root trace every few seconds. A span given an explicit
 * parent inside fn (publishWithId's parent) is still recorded.
 */
export function untraced<T>(fn: () => T): T {
  return context.with(context.active().setValue(SUPPRESS_TRACING, true), fn);
}
