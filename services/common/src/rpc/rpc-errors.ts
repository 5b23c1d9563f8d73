import { Code, ConnectError } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import {
  AlreadyExistsError,
  DomainError,
  EtagMismatchError,
  InvalidArgumentError,
  NotFoundError,
  PreconditionError,
  RateLimitedError,
  UnauthenticatedError,
  withoutStacks,
} from "../errors.ts";
import type { Logger } from "../observe/log.ts";
import { unavailableBackend } from "../unavailable.ts";

/** ERROR_DOMAIN is the google.rpc.ErrorInfo domain of every stockroom error. */
export const ERROR_DOMAIN = "stockroom";

/**
 * toConnectError maps a domain error to a status with google.rpc details
 * (AIP-193). A database or NATS that cannot be reached (or is shutting down,
 * full of connections, read-only in a failover) is UNAVAILABLE, which
 * clients retry with backoff; anything else unrecognized becomes INTERNAL.
 * Either way the message is generic: the cause is logged, never sent to the
 * client.
 */
export function toConnectError(error: unknown, log: Logger, procedure: string): ConnectError {
  if (error instanceof ConnectError) return error;
  // A domain error's status is an answer like any other: no stack trace to capture (errors.ts DomainError).
  const status = error instanceof DomainError ? withoutStacks(() => domainStatus(error)) : undefined;
  if (status) return status;
  const backend = unavailableBackend(error);
  if (backend) {
    logOutage(log, backend, procedure, error);
    return new ConnectError(`the ${backend} is unavailable; retry with backoff`, Code.Unavailable, undefined, [
      { desc: ErrorInfoSchema, value: { reason: "BACKEND_UNAVAILABLE", domain: ERROR_DOMAIN, metadata: { backend } } },
    ]);
  }
  log.error("unhandled error", { procedure, error });
  return new ConnectError("internal error", Code.Internal);
}

/** An outage's calls are logged once per this long, with their count. */
const OUTAGE_LOG_EVERY_MS = 60_000;
const outages = new WeakMap<Logger, Map<string, { loggedAt: number; since: number }>>();

/**
 * logOutage logs the first call a backend outage fails, with its cause, and
 * then one line a minute with how many calls it answered UNAVAILABLE since:
 * under load that is thousands a second, and each would be a line with a
 * stack. The process's dependency probes say when the backend is back
 * (probes.ts), and the RPC metrics count every call by its code.
 */
function logOutage(log: Logger, backend: string, procedure: string, error: unknown): void {
  const byBackend = outages.get(log) ?? new Map<string, { loggedAt: number; since: number }>();
  outages.set(log, byBackend);
  const now = Date.now();
  const last = byBackend.get(backend);
  if (last && now - last.loggedAt < OUTAGE_LOG_EVERY_MS) {
    last.since++;
    return;
  }
  byBackend.set(backend, { loggedAt: now, since: 0 });
  log.warn(`${backend} unavailable: calls are answered UNAVAILABLE (logged once a minute)`, {
    procedure,
    ...(last && { callsSinceLastLine: last.since }),
    error,
  });
}

/** domainStatus is the status of a domain error; undefined for one it has no mapping for. */
function domainStatus(error: DomainError): ConnectError | undefined {
  const info = (reason: string, metadata: Record<string, string> = {}) => ({
    desc: ErrorInfoSchema,
    value: { reason, domain: ERROR_DOMAIN, metadata },
  });
  if (error instanceof InvalidArgumentError) {
    return new ConnectError(error.message, Code.InvalidArgument, undefined, [
      info(error.reason),
      { desc: BadRequestSchema, value: { fieldViolations: error.violations } },
    ]);
  }
  if (error instanceof NotFoundError) {
    return new ConnectError(error.message, Code.NotFound, undefined, [
      info("NOT_FOUND", { resource_type: error.resourceType }),
      { desc: ResourceInfoSchema, value: { resourceType: error.resourceType, resourceName: error.resourceName } },
    ]);
  }
  if (error instanceof AlreadyExistsError) {
    return new ConnectError(error.message, Code.AlreadyExists, undefined, [
      info("ALREADY_EXISTS", { resource_type: error.resourceType }),
      { desc: ResourceInfoSchema, value: { resourceType: error.resourceType, resourceName: error.resourceName } },
    ]);
  }
  if (error instanceof EtagMismatchError) {
    return new ConnectError(error.message, Code.Aborted, undefined, [info("ETAG_MISMATCH", { current_etag: error.currentEtag })]);
  }
  if (error instanceof PreconditionError) {
    return new ConnectError(error.message, Code.FailedPrecondition, undefined, [
      info(error.reason, error.metadata),
      ...(error.violations.length > 0 ? [{ desc: PreconditionFailureSchema, value: { violations: error.violations } }] : []),
    ]);
  }
  if (error instanceof RateLimitedError) {
    return new ConnectError(error.message, Code.ResourceExhausted, undefined, [
      info("RATE_LIMITED", { retry_after_ms: String(error.retryAfterMs) }),
      { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(error.retryAfterMs) } },
    ]);
  }
  if (error instanceof UnauthenticatedError) {
    return new ConnectError(error.message, Code.Unauthenticated, undefined, [info("UNAUTHENTICATED")]);
  }
  return undefined;
}
