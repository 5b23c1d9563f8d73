/**
 * Domain errors: small typed classes that domain and store code throw. The
 * error interceptor (interceptors.ts) is the only place that turns them into
 * RPC statuses, so domain code never imports Connect.
 */

/**
 * DomainError is an expected outcome, not a fault: it is answered as a
 * status, never logged as a crash, so it is built without a stack trace.
 * In a sell-out burst each refused call built two errors with stacks (this
 * and its ConnectError): their constructors were 8% of the orders server's
 * CPU, and are under 1% without the capture.
 */
export class DomainError extends Error {
  constructor(message: string) {
    // withoutStacks, inlined: super() cannot be called from a callback here.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message);
    Error.stackTraceLimit = limit;
  }
}

/**
 * withoutStacks runs fn with stack traces off, for errors that are answered
 * and dropped at once (a refusal, its status): capturing their stacks was
 * the largest single cost of a refused call in a spike.
 */
export function withoutStacks<T>(fn: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return fn();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** FieldViolation names one bad request field and why it is bad. */
export interface FieldViolation {
  field: string;
  description: string;
}

/** InvalidArgumentError: the request is malformed; nothing was written. */
export class InvalidArgumentError extends DomainError {
  override name = "InvalidArgumentError";
  readonly violations: FieldViolation[];
  readonly reason: string;
  constructor(violations: FieldViolation[], reason = "INVALID_ARGUMENT", message?: string) {
    super(message ?? violations.map((v) => `${v.field}: ${v.description}`).join("; "));
    this.violations = violations;
    this.reason = reason;
  }
}

/** RequestIdMismatchError: a request_id was reused with other parameters. */
export class RequestIdMismatchError extends InvalidArgumentError {
  override name = "RequestIdMismatchError";
  constructor(requestId: string) {
    super(
      [{ field: "request_id", description: "was already used with different parameters" }],
      "REQUEST_ID_MISMATCH",
      `request_id "${requestId}" was already used with different parameters`,
    );
  }
}

/** NotFoundError: the resource does not exist for this merchant. */
export class NotFoundError extends DomainError {
  override name = "NotFoundError";
  readonly resourceType: string;
  readonly resourceName: string;
  constructor(resourceType: string, resourceName: string) {
    super(`${resourceType} "${resourceName}" not found`);
    this.resourceType = resourceType;
    this.resourceName = resourceName;
  }
}

/** AlreadyExistsError: a create named a key that is taken. */
export class AlreadyExistsError extends DomainError {
  override name = "AlreadyExistsError";
  readonly resourceType: string;
  readonly resourceName: string;
  constructor(resourceType: string, resourceName: string) {
    super(`${resourceType} "${resourceName}" already exists`);
    this.resourceType = resourceType;
    this.resourceName = resourceName;
  }
}

/** EtagMismatchError: optimistic concurrency lost; the caller should re-read. */
export class EtagMismatchError extends DomainError {
  override name = "EtagMismatchError";
  readonly currentEtag: string;
  constructor(resourceName: string, currentEtag: string) {
    super(`${resourceName} was changed: the etag does not match the current version`);
    this.currentEtag = currentEtag;
  }
}

/** PreconditionViolation names one piece of system state that forbids a request (google.rpc.PreconditionFailure). */
export interface PreconditionViolation {
  /** An UPPER_SNAKE kind, e.g. "INSUFFICIENT_STOCK". */
  type: string;
  /** What failed, relative to the type, e.g. a SKU. */
  subject: string;
  description: string;
}

/** PreconditionError: the request is valid but the system state forbids it. */
export class PreconditionError extends DomainError {
  override name = "PreconditionError";
  readonly reason: string;
  readonly metadata: Record<string, string>;
  /** Every failing precondition, when there can be several (e.g. one per order line). */
  readonly violations: PreconditionViolation[];
  constructor(reason: string, message: string, metadata: Record<string, string> = {}, violations: PreconditionViolation[] = []) {
    super(message);
    this.reason = reason;
    this.metadata = metadata;
    this.violations = violations;
  }
}

/** RateLimitedError: the caller is over its rate; it may retry after retryAfterMs (whole milliseconds, rounded up). */
export class RateLimitedError extends DomainError {
  override name = "RateLimitedError";
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number) {
    super(message);
    this.retryAfterMs = Math.max(0, Math.ceil(retryAfterMs));
  }
}

/** UnauthenticatedError: no valid credential was presented. */
export class UnauthenticatedError extends DomainError {
  override name = "UnauthenticatedError";
}
