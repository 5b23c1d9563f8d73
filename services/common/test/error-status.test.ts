/**
 * respondWithError (node-http.ts) keeps the encoded status fields of the
 * errors it answered, by code, message and details: an answer from that
 * cache must be the fields setTrailerStatus gives the same error, and
 * errors that differ in anything, or carry metadata of their own, must
 * never share one.
 */
import type http2 from "node:http2";
import test from "ava";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { ErrorInfoSchema, RetryInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { PreconditionError } from "../src/errors.ts";
import { createLogger } from "../src/observe/log.ts";
import { grpcPercentEncode } from "../src/rpc/grpc-message.ts";
import { respondWithError } from "../src/rpc/node-http.ts";
import { toConnectError } from "../src/rpc/rpc-errors.ts";

const log = createLogger("test", "silent");

/** answer is what respondWithError hands the stream, for head and error. */
function answer(error: ConnectError, head: http2.OutgoingHttpHeaders = { "content-type": "application/grpc" }) {
  let sent: http2.OutgoingHttpHeaders | undefined;
  const stream = { destroyed: false, respond: (headers: http2.OutgoingHttpHeaders) => (sent = headers) };
  respondWithError(stream as unknown as http2.ServerHttp2Stream, head, error);
  return sent!;
}

/** expected is the answer built from setTrailerStatus, as respondWithError builds it without its cache. */
function expected(error: ConnectError, head: http2.OutgoingHttpHeaders = { "content-type": "application/grpc" }) {
  const fields: Record<string, string> = {};
  setTrailerStatus(new Headers(), error).forEach((value, key) => {
    fields[key] = value;
  });
  return { ":status": 200, ...head, ...fields, "grpc-message": grpcPercentEncode(error.rawMessage) };
}

const soldOut = (available: string) =>
  toConnectError(new PreconditionError("INSUFFICIENT_STOCK", '"MUG" has 0 in stock; 1 requested', { sku: "MUG", available }), log, "/t");

test("a repeated error is answered with the same fields as the first time, which are setTrailerStatus's", (t) => {
  const first = answer(soldOut("0"));
  const again = answer(soldOut("0"));
  t.deepEqual(first, expected(soldOut("0")));
  t.deepEqual(again, first);
  t.truthy(again["grpc-status-details-bin"]);
});

test("errors that differ only in a detail's value get their own fields", (t) => {
  t.deepEqual(answer(soldOut("0")), expected(soldOut("0")));
  t.deepEqual(answer(soldOut("1")), expected(soldOut("1")));
  t.not(answer(soldOut("0"))["grpc-status-details-bin"], answer(soldOut("1"))["grpc-status-details-bin"]);
  const retry = (ms: number) =>
    new ConnectError("slow down", Code.ResourceExhausted, undefined, [
      { desc: RetryInfoSchema, value: { retryDelay: durationFromMs(ms) } },
      { desc: ErrorInfoSchema, value: { reason: "RATE_LIMITED", domain: "stockroom" } },
    ]);
  // Durations hold bigints: still told apart.
  t.deepEqual(answer(retry(2000)), expected(retry(2000)));
  t.deepEqual(answer(retry(3000)), expected(retry(3000)));
});

test("an error with metadata of its own is answered with it, and shares no fields with one without", (t) => {
  const plain = new ConnectError("nope", Code.FailedPrecondition);
  const tagged = new ConnectError("nope", Code.FailedPrecondition, { "x-reason": "tagged" });
  t.deepEqual(answer(plain), expected(plain));
  t.is(answer(tagged)["x-reason"], "tagged");
  t.deepEqual(answer(tagged), expected(tagged));
  t.is(answer(plain)["x-reason"], undefined);
});
