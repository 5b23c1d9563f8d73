/**
 * The early refusal's status details, encoded by hand (rateLimitedStatusBin,
 * node-http.ts), against connect's own encoding of the status
 * toConnectError gives the same RateLimitedError: byte for byte, over
 * messages and delays that cross the encoding's edges (varint lengths of 1
 * and 2 bytes, zero and whole seconds, multi-byte UTF-8).
 */
import test from "ava";
import { Code } from "@connectrpc/connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { ErrorInfoSchema, RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { RateLimitedError } from "../src/errors.ts";
import { createLogger } from "../src/observe/log.ts";
import { rateLimitedStatusBin } from "../src/rpc/node-http.ts";
import { toConnectError } from "../src/rpc/rpc-errors.ts";

const log = createLogger("test", "silent");
const messages = [
  "",
  "this merchant already has 16 order transactions in flight (the limit per merchant) and 3 waiting; retry in 12 ms",
  "x".repeat(127),
  "x".repeat(128),
  "y".repeat(20_000),
  "späti — 売り切れ 🛒; retry in 5 ms",
];
const delays = [0, 1, 5, 127, 128, 999, 1000, 1001, 16_383, 16_384, 60_000, 2 ** 31 + 7];

test("the hand-encoded details are connect's bytes for the same RateLimitedError", (t) => {
  for (const message of messages) {
    for (const ms of delays) {
      const error = new RateLimitedError(message, ms);
      const expected = setTrailerStatus(new Headers(), toConnectError(error, log, "/test")).get("grpc-status-details-bin");
      t.is(rateLimitedStatusBin(error), expected ?? "(none)", `${message.slice(0, 20)}… / ${ms} ms`);
    }
  }
});

test("a client reads the hand-encoded details: ErrorInfo RATE_LIMITED and RetryInfo's delay", (t) => {
  const error = new RateLimitedError("retry in 1500 ms", 1500);
  const headers = new Headers({ "grpc-status": "8", "grpc-message": "retry", "grpc-status-details-bin": rateLimitedStatusBin(error) });
  // findTrailerError reads a status the way connect's gRPC clients do.
  const status = findTrailerError(headers)!;
  t.is(status.code, Code.ResourceExhausted);
  t.is(status.rawMessage, "retry in 1500 ms", "the message in the details wins over grpc-message");
  t.is(status.findDetails(ErrorInfoSchema)[0]?.reason, "RATE_LIMITED");
  t.is(status.findDetails(ErrorInfoSchema)[0]?.metadata["retry_after_ms"], "1500");
  const delay = status.findDetails(RetryInfoSchema)[0]?.retryDelay;
  t.is(Number(delay?.seconds), 1);
  t.is(delay?.nanos, 500_000_000);
});

test("a delay is whole milliseconds, rounded up and never negative", (t) => {
  t.is(new RateLimitedError("m", 12.2).retryAfterMs, 13);
  t.is(new RateLimitedError("m", -4).retryAfterMs, 0);
});
