/**
 * Domain errors are answers, not faults (errors.ts DomainError): they and
 * the statuses toConnectError makes of them are built without a stack
 * trace, and every other error still gets one (and is logged as INTERNAL).
 */
import test from "ava";
import { Code, ConnectError } from "@connectrpc/connect";
import { NotFoundError, PreconditionError, RateLimitedError } from "../src/errors.ts";
import { createLogger } from "../src/observe/log.ts";
import { toConnectError } from "../src/rpc/rpc-errors.ts";

const log = createLogger("test", "silent");
/** frames counts a stack's "at …" lines. */
const frames = (error: Error) => (error.stack ?? "").split("\n").filter((l) => l.trim().startsWith("at ")).length;

test("a domain error and its status carry no stack frames; the stack trace limit is left as it was", (t) => {
  const limit = Error.stackTraceLimit;
  const refusal = new PreconditionError("INSUFFICIENT_STOCK", '"MUG" has 0 in stock; 1 requested', { sku: "MUG" });
  t.is(frames(refusal), 0);
  t.is(refusal.stack, 'PreconditionError: "MUG" has 0 in stock; 1 requested');
  t.true(refusal instanceof Error);
  for (const error of [refusal, new NotFoundError("product", "MUG"), new RateLimitedError("slow down", 20)]) {
    const status = toConnectError(error, log, "/test");
    t.is(frames(status), 0, error.name);
    t.not(status.code, Code.Internal, error.name);
  }
  t.is(Error.stackTraceLimit, limit);
});

test("any other error keeps its stack, and its status is INTERNAL", (t) => {
  const fault = new TypeError("cannot read properties of undefined");
  t.true(frames(fault) > 0);
  const status = toConnectError(fault, log, "/test");
  t.true(status instanceof ConnectError);
  t.is(status.code, Code.Internal);
  t.is(status.rawMessage, "internal error");
});
