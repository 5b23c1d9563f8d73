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
    log.warn(`${backend} unavailable`, { procedure, error });
    return new ConnectError(`the ${backend} is unavailable; retry with backoff`, Code.Unavailable, undefined, [
      { desc: ErrorInfoSchema, value: { reason: "BACKEND_UNAVAILABLE", domain: ERROR_DOMAIN, metadata: { backend } } },
    ]);
  }
  log.error("unhandled error", { procedure, error });
  return new ConnectError("internal error", Code.Internal);
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
