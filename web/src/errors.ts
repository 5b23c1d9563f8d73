/** Plain-language messages for the SDK's typed errors: what happened and what the merchant can do. */
import {
  Code,
  ConflictError,
  NotFoundError,
  PermissionError,
  PreconditionError,
  RateLimitedError,
  StockroomError,
  UnavailableError,
  ValidationError,
} from "@stockroom/sdk/web";

const REASONS: Record<string, (m: Readonly<Record<string, string>>) => string> = {
  INSUFFICIENT_STOCK: (m) =>
    `Not enough stock for ${m["sku"] ?? "a product"}: ${m["available"] ?? "?"} left, ${m["requested"] ?? "?"} asked.`,
  INVALID_ORDER_STATE: (m) =>
    `The order is ${(m["current_state"] ?? "in another state")
      .replace(/^ORDER_STATE_/, "")
      .toLowerCase()
      .replace(/_/g, " ")} now, so this step no longer applies. The page shows its current state.`,
  ALREADY_PAID: () => "This order was already paid with another payment.",
  PAYMENT_ID_IN_USE: () => "That payment reference already paid another order.",
  ITEMS_EXPIRED: () => "This job's item details were deleted (they are kept 30 days after a job ends); the counts remain.",
  JOB_NOT_ROLLBACKABLE: () => "This job cannot be rolled back in its current state.",
  SEARCH_UNAVAILABLE: () => "Search is not available on this server.",
  LAST_ACTIVE_KEY: () => "This is your last active key: add another key first, then revoke this one.",
  TOO_MANY_KEYS: (m) => `${m["active"] ?? "50"} keys are active, the most there can be: revoke one you no longer use first.`,
  REQUEST_ID_MISMATCH: () => "This upload was already started with another file or other options. Start a new upload.",
};

/** describeError turns anything a call threw into one sentence or two for the merchant. */
export function describeError(error: unknown): string {
  if (error instanceof DOMException && error.name === "AbortError") return "Cancelled.";
  if (!(error instanceof StockroomError))
    return error instanceof Error ? `Something went wrong: ${error.message}` : "Something went wrong.";
  const byReason = REASONS[error.reason];
  if (byReason) return byReason(error.metadata);
  if (error instanceof PermissionError)
    return error.unauthenticated
      ? "This API key was not accepted (mistyped, revoked or expired). Sign in again with a valid key."
      : "This API key may not do that.";
  if (error instanceof ConflictError) return "Someone else changed this after you opened it. Review their changes, then apply yours again.";
  if (error instanceof ValidationError) {
    const fields = error.fieldViolations.map((v) => `${v.field}: ${v.description}`);
    return fields.length > 0 ? `Some values were not accepted. ${fields.join("; ")}.` : `The request was not accepted: ${error.message}`;
  }
  if (error instanceof NotFoundError) return `This ${error.resourceType.replace(/_/g, " ") || "item"} does not exist, or was deleted.`;
  if (error instanceof RateLimitedError)
    return `Too many requests right now. Try again${error.retryDelayMs ? ` in ${Math.ceil(error.retryDelayMs / 1000)} s` : " shortly"}.`;
  if (error instanceof PreconditionError) {
    const first = error.violations[0]?.description;
    return first ? `This cannot be done now: ${first}` : `This cannot be done now: ${error.message}`;
  }
  if (error instanceof UnavailableError)
    return error.fromServer
      ? "The server is temporarily unavailable. Try again in a moment."
      : "The server cannot be reached. Check your connection and try again.";
  if (error.code === Code.Unimplemented)
    return "This server does not run this part of stockroom (each API process serves only its own services).";
  if (error.code === Code.DeadlineExceeded) return "The server took too long to answer. Try again.";
  return `The server could not do this (${Code[error.code]}). Try again; if it keeps failing, contact support${error.requestId ? ` with request id ${error.requestId}` : ""}.`;
}

/** isSignedOut: the key is no longer accepted, so the app returns to the sign-in page. */
export function isSignedOut(error: unknown): boolean {
  return error instanceof PermissionError && error.unauthenticated;
}
