/**
 * Typed errors: every call of a stockroom client throws a StockroomError (or
 * one of its subclasses), decoded from the google.rpc details the server
 * attaches (AIP-193), with the raw ConnectError kept as `cause`.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";

/** ERROR_DOMAIN is the google.rpc.ErrorInfo domain of errors the stockroom server raises. */
export const ERROR_DOMAIN = "stockroom";

/** FieldViolation names one bad field of a request (google.rpc.BadRequest). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** PreconditionViolation is one unmet precondition (google.rpc.PreconditionFailure), e.g. a SKU short of stock. */
export interface PreconditionViolation {
  type: string;
  subject: string;
  description: string;
}

/**
 * StockroomError is the base of every error a stockroom client throws.
 * `code` is the gRPC status code, `reason` the UPPER_SNAKE ErrorInfo reason
 * ("" when the server sent none, or the call never reached it), `metadata`
 * the ErrorInfo metadata, and `cause` the raw ConnectError.
 */
export class StockroomError extends Error {
  override name = "StockroomError";
  readonly code: Code;
  readonly reason: string;
  readonly metadata: Readonly<Record<string, string>>;
  override readonly cause: ConnectError;
  /**
   * The request_id (AIP-155 idempotency key) the failed call carried, the SDK's
   * generated one included; undefined for calls without one. Retrying with it
   * is safe: the server answers a repeat with the first outcome.
   */
  readonly requestId: string | undefined = undefined;

  constructor(cause: ConnectError, reason = "", metadata: Record<string, string> = {}, code: Code = cause.code) {
    super(cause.message, { cause });
    this.code = code;
    this.reason = reason;
    this.metadata = metadata;
    this.cause = cause;
  }

  /** fromServer is false for failures before an answer arrived: a dropped connection, a deadline, a cancel. */
  get fromServer(): boolean {
    return this.cause.isWireError;
  }
}

/** ConflictError is ABORTED: the etag sent is stale; `currentEtag` is the resource's etag now. */
export class ConflictError extends StockroomError {
  override name = "ConflictError";
  readonly currentEtag: string;
  constructor(cause: ConnectError, reason: string, metadata: Record<string, string>) {
    super(cause, reason, metadata);
    this.currentEtag = metadata["current_etag"] ?? "";
  }
}

/** ValidationError is INVALID_ARGUMENT, with every bad field at once. */
export class ValidationError extends StockroomError {
  override name = "ValidationError";
  readonly fieldViolations: readonly FieldViolation[];
  constructor(cause: ConnectError, reason: string, metadata: Record<string, string>) {
    super(cause, reason, metadata);
    this.fieldViolations = cause
      .findDetails(BadRequestSchema)
      .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  }
}

/** resourceOf reads the resource a NOT_FOUND or ALREADY_EXISTS names (google.rpc.ResourceInfo, else the ErrorInfo metadata). */
function resourceOf(cause: ConnectError, metadata: Record<string, string>): { resourceType: string; resourceName: string } {
  const info = cause.findDetails(ResourceInfoSchema)[0];
  return { resourceType: info?.resourceType ?? metadata["resource_type"] ?? "", resourceName: info?.resourceName ?? "" };
}

/** ResourceError is what NotFoundError and AlreadyExistsError share: the resource the server names. */
export abstract class ResourceError extends StockroomError {
  readonly resourceType: string;
  readonly resourceName: string;
  constructor(cause: ConnectError, reason: string, metadata: Record<string, string>) {
    super(cause, reason, metadata);
    const resource = resourceOf(cause, metadata);
    this.resourceType = resource.resourceType;
    this.resourceName = resource.resourceName;
  }
}

/** NotFoundError is NOT_FOUND; another merchant's resource is NOT_FOUND too. */
export class NotFoundError extends ResourceError {
  override name = "NotFoundError";
}

/** AlreadyExistsError is ALREADY_EXISTS, e.g. creating a SKU the merchant already has. */
export class AlreadyExistsError extends ResourceError {
  override name = "AlreadyExistsError";
}

/** RateLimitedError is RESOURCE_EXHAUSTED; `retryDelayMs` is the server's RetryInfo, if it sent one. */
export class RateLimitedError extends StockroomError {
  override name = "RateLimitedError";
  readonly retryDelayMs: number | undefined;
  constructor(cause: ConnectError, reason: string, metadata: Record<string, string>) {
    super(cause, reason, metadata);
    this.retryDelayMs = retryDelayOf(cause);
  }
}

/** PermissionError is UNAUTHENTICATED (missing, unknown or revoked key) or PERMISSION_DENIED. */
export class PermissionError extends StockroomError {
  override name = "PermissionError";
  get unauthenticated(): boolean {
    return this.code === Code.Unauthenticated;
  }
}

/** PreconditionError is FAILED_PRECONDITION, e.g. INSUFFICIENT_STOCK or an upload part that leaves a gap. */
export class PreconditionError extends StockroomError {
  override name = "PreconditionError";
  readonly violations: readonly PreconditionViolation[];
  constructor(cause: ConnectError, reason: string, metadata: Record<string, string>) {
    super(cause, reason, metadata);
    this.violations = cause
      .findDetails(PreconditionFailureSchema)
      .flatMap((d) => d.violations.map((v) => ({ type: v.type, subject: v.subject, description: v.description })));
  }
}

/**
 * UnavailableError is UNAVAILABLE: the server said so, or the connection
 * broke before its answer arrived (then `fromServer` is false, and `cause`
 * keeps the transport's own code, e.g. ABORTED for ECONNRESET in Node).
 */
export class UnavailableError extends StockroomError {
  override name = "UnavailableError";
  constructor(cause: ConnectError, reason: string, metadata: Record<string, string>) {
    super(cause, reason, metadata, Code.Unavailable);
  }
}

/** attachRequestId records on an error the request_id of the call that failed (the first one recorded stays). */
export function attachRequestId<E>(error: E, requestId: string | undefined): E {
  if (error instanceof StockroomError && error.requestId === undefined && requestId) {
    (error as { requestId: string | undefined }).requestId = requestId;
  }
  return error;
}

/** TRANSPORT_CODES are what connect's transports report for a broken connection (Node maps ECONNRESET to ABORTED). */
const TRANSPORT_CODES: ReadonlySet<Code> = new Set([Code.Unavailable, Code.Aborted, Code.Internal, Code.Unknown]);

/**
 * isTransportFailure tells a dropped or refused connection from an answer of
 * the server. A CANCELED that the caller did not ask for is one too: Node
 * reports the streams of a lost HTTP/2 connection as cancelled.
 */
export function isTransportFailure(error: ConnectError, callAborted = false): boolean {
  return !error.isWireError && (TRANSPORT_CODES.has(error.code) || (error.code === Code.Canceled && !callAborted));
}

/** retryDelayOf reads google.rpc.RetryInfo from an error, in milliseconds. */
export function retryDelayOf(error: ConnectError): number | undefined {
  const delay = error.findDetails(RetryInfoSchema)[0]?.retryDelay;
  if (!delay) return undefined;
  return Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6);
}

/**
 * toStockroomError turns anything a call threw into the matching typed
 * error. A StockroomError is returned as is. callAborted says whether the
 * call's own signal was aborted (a cancel or deadline, not a lost connection).
 */
export function toStockroomError(error: unknown, callAborted = false): StockroomError {
  if (error instanceof StockroomError) return error;
  const ce = ConnectError.from(error);
  const info = ce.findDetails(ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN) ?? ce.findDetails(ErrorInfoSchema)[0];
  const reason = info?.reason ?? "";
  const metadata: Record<string, string> = { ...info?.metadata };
  if (isTransportFailure(ce, callAborted)) return new UnavailableError(ce, reason, metadata);
  switch (ce.code) {
    case Code.Aborted:
      return new ConflictError(ce, reason, metadata);
    case Code.InvalidArgument:
    case Code.OutOfRange:
      return new ValidationError(ce, reason, metadata);
    case Code.NotFound:
      return new NotFoundError(ce, reason, metadata);
    case Code.AlreadyExists:
      return new AlreadyExistsError(ce, reason, metadata);
    case Code.ResourceExhausted:
      return new RateLimitedError(ce, reason, metadata);
    case Code.Unauthenticated:
    case Code.PermissionDenied:
      return new PermissionError(ce, reason, metadata);
    case Code.FailedPrecondition:
      return new PreconditionError(ce, reason, metadata);
    case Code.Unavailable:
      return new UnavailableError(ce, reason, metadata);
    default:
      return new StockroomError(ce, reason, metadata);
  }
}
