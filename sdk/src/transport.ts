/**
 * createResilientTransport wraps a connect transport with what every
 * stockroom call needs: a request_id generated once for mutating calls that
 * left it empty, a deadline on every unary call, retries by the rules in
 * retry.ts, and typed errors. It sits outside the transport (not in its
 * interceptor chain) because connect's call runner turns anything an
 * interceptor throws that is not a ConnectError into UNKNOWN, and because
 * deadline and cancel errors are raised outside the interceptors.
 *
 * Streams get no default deadline (a watch may run for an hour); a
 * timeoutMs given for one is enforced with a timer of our own that is
 * cleared when the stream ends, fails or is abandoned, so no timer outlives
 * the call.
 */
import { Code, ConnectError, createContextKey, type ContextValues, type StreamResponse, type Transport } from "@connectrpc/connect";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { ScalarType, type DescMessage, type DescMethod, type DescMethodStreaming, type MessageInitShape } from "@bufbuild/protobuf";
import { attachRequestId, toStockroomError, type StockroomError } from "./errors.ts";
import { newRequestId } from "./request-id.ts";
import { abortReason, retryDelayMs, sleep, type RetryPolicy } from "./retry.ts";

export interface ResilienceOptions {
  /** The deadline of a unary call, retries included, in ms; 0 or undefined for none. */
  timeoutMs: number | undefined;
  retry: RetryPolicy;
}

/** kSingleAttempt makes one call skip retries (the upload helper resumes parts with GetUpload instead). */
export const kSingleAttempt = createContextKey<boolean>(false, { description: "stockroom: single attempt" });

/** READ_METHODS change nothing on the server. */
const READ_METHODS = /^(Get|List|BatchGet|Search|Watch|Download)[A-Z]/;

/** IDEMPOTENT_BY_CONTRACT are mutations the API defines as safe to repeat without a request_id. */
const IDEMPOTENT_BY_CONTRACT: ReadonlySet<string> = new Set([
  // A part repeating bytes already received is accepted when identical.
  "stockroom.bulk.v1.BulkJobService.AppendUploadPart",
  // A repeat returns the job the first call started.
  "stockroom.bulk.v1.BulkJobService.CompleteUpload",
  // Cancelling a cancelled job changes nothing.
  "stockroom.bulk.v1.BulkJobService.CancelBulkJob",
  // A repeat makes a second, empty upload that is never completed and expires.
  "stockroom.bulk.v1.BulkJobService.CreateUpload",
  // Idempotent by payment_id.
  "stockroom.order.v1.OrderService.MarkOrderPaid",
  // Revoking a revoked key returns it as it is.
  "stockroom.account.v1.ApiKeyService.RevokeApiKey",
]);

/** isIdempotent tells whether repeating a call can never apply it twice. */
export function isIdempotent(method: DescMethod): boolean {
  return (
    method.idempotency !== MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN ||
    READ_METHODS.test(method.name) ||
    IDEMPOTENT_BY_CONTRACT.has(`${method.parent.typeName}.${method.name}`) ||
    hasRequestId(method.input)
  );
}

function hasRequestId(input: DescMessage): boolean {
  const field = input.field["requestId"];
  return field?.fieldKind === "scalar" && field.scalar === ScalarType.STRING;
}

/** withRequestId returns the request with a fresh request_id if it has that field and left it empty; the caller's object is not changed. */
export function withRequestId<T>(input: DescMessage, message: T): T {
  if (!hasRequestId(input)) return message;
  const current = (message as { requestId?: string }).requestId;
  if (current !== undefined && current !== "") return message;
  return { ...message, requestId: newRequestId() };
}

export function createResilientTransport(inner: Transport, options: ResilienceOptions): Transport {
  return {
    async unary(method, signal, timeoutMs, header, input, contextValues) {
      const message = withRequestId(method.input, input);
      const idempotent = isIdempotent(method);
      const budget = timeoutMs ?? options.timeoutMs;
      const deadline = budget !== undefined && budget > 0 ? Date.now() + budget : undefined;
      const policy = callPolicy(options.retry, contextValues);
      const requestId = (message as { requestId?: unknown }).requestId;
      for (let attempt = 0; ; attempt++) {
        const remaining = deadline === undefined ? undefined : Math.max(1, deadline - Date.now());
        try {
          return await inner.unary(method, signal, remaining, header, message, contextValues);
        } catch (e) {
          // The caller's abort is the platform's AbortError (the signal's reason), as with fetch.
          if (signal?.aborted) throw abortReason(signal);
          const timedOut = deadline !== undefined && Date.now() >= deadline;
          const error = attachRequestId(toStockroomError(e, timedOut), typeof requestId === "string" ? requestId : undefined);
          const delay = retryDelayMs(error, idempotent, attempt, policy);
          if (delay === undefined) throw error;
          if (deadline !== undefined && Date.now() + delay >= deadline) throw error;
          await sleep(delay, signal);
        }
      }
    },

    async stream(method, signal, timeoutMs, header, input, contextValues) {
      const guard = createCallGuard(signal, timeoutMs);
      try {
        const response = await openStream(inner, method, guard.signal, header, input, contextValues, options.retry);
        return { ...response, message: mapStreamErrors(response.message, guard, signal) };
      } catch (e) {
        if (signal?.aborted) {
          guard.release();
          throw abortReason(signal);
        }
        const error = toStockroomError(e, guard.signal.aborted);
        guard.release();
        throw error;
      }
    },
  };
}

/**
 * openStream starts a streaming call. A server stream of a read method whose
 * start fails (before any message) is retried like a unary read: its single
 * request message is kept so it can be sent again. A client stream cannot be
 * replayed and is never retried here.
 */
async function openStream<I extends DescMessage, O extends DescMessage>(
  inner: Transport,
  method: DescMethodStreaming<I, O>,
  signal: AbortSignal,
  header: HeadersInit | undefined,
  input: AsyncIterable<MessageInitShape<I>>,
  contextValues: ContextValues | undefined,
  retry: RetryPolicy,
): Promise<StreamResponse<I, O>> {
  if (method.methodKind !== "server_streaming") {
    return inner.stream(method, signal, undefined, header, input, contextValues);
  }
  const requests: MessageInitShape<I>[] = [];
  for await (const r of input) requests.push(r);
  const policy = callPolicy(retry, contextValues);
  const idempotent = isIdempotent(method);
  for (let attempt = 0; ; attempt++) {
    try {
      return await inner.stream(method, signal, undefined, header, replay(requests), contextValues);
    } catch (e) {
      if (signal.aborted) throw e;
      const error = toStockroomError(e);
      const delay = retryDelayMs(error, idempotent, attempt, policy);
      if (delay === undefined) throw error;
      await sleep(delay, signal);
    }
  }
}

async function* mapStreamErrors<T>(messages: AsyncIterable<T>, guard: CallGuard, outer: AbortSignal | undefined): AsyncGenerator<T> {
  try {
    yield* messages;
  } catch (e) {
    if (outer?.aborted) throw abortReason(outer);
    throw toStockroomError(e, guard.signal.aborted);
  } finally {
    guard.release();
  }
}

async function* replay<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

/** callPolicy is the retry policy of one call: a single attempt when it asked for kSingleAttempt. */
function callPolicy(retry: RetryPolicy, contextValues: ContextValues | undefined): RetryPolicy {
  return contextValues?.get(kSingleAttempt) === true ? { ...retry, maxAttempts: 1 } : retry;
}

/**
 * createCallGuard links a call to the caller's signal and an optional
 * deadline. release() clears the timer and detaches from the caller's
 * signal, and cancels the call if it is still running; the timer is also
 * unref'd in Node, so even an abandoned stream never keeps a process alive.
 */
export interface CallGuard {
  signal: AbortSignal;
  release(): void;
}

export function createCallGuard(outer: AbortSignal | undefined, timeoutMs: number | undefined): CallGuard {
  const controller = new AbortController();
  const onAbort = () => controller.abort(outer!.reason);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const release = () => {
    clearTimeout(timer);
    outer?.removeEventListener("abort", onAbort);
    if (!controller.signal.aborted) controller.abort(new ConnectError("the call ended", Code.Canceled));
  };
  if (outer?.aborted) controller.abort(outer.reason);
  else outer?.addEventListener("abort", onAbort, { once: true });
  if (timeoutMs !== undefined && timeoutMs > 0) {
    timer = setTimeout(() => controller.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)), timeoutMs);
    (timer as { unref?: () => void }).unref?.();
  }
  controller.signal.addEventListener(
    "abort",
    () => {
      clearTimeout(timer);
      outer?.removeEventListener("abort", onAbort);
    },
    { once: true },
  );
  return { signal: controller.signal, release };
}

export type { StockroomError };
