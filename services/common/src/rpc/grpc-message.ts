import type { UniversalServerResponse } from "@connectrpc/connect/protocol";
import { isSettled } from "./decode.ts";

/**
 * connect-es percent-encodes a gRPC status message with encodeURIComponent
 * (":" becomes "%3A", "," "%2C"). The gRPC spec percent-encodes only bytes
 * outside printable ASCII (0x20–0x7E) and "%" itself, and @grpc/grpc-js
 * decodes with decodeURI, which leaves "%3A" as it is: its callers read
 * "title%3A must be …". grpcMessageAsSpecified re-encodes the grpc-message
 * of a gRPC response the spec's way once the response has run; every client
 * decodes that (connect-es's decodeURIComponent included). gRPC-Web (status
 * in the body) and Connect (JSON errors) are left alone.
 */
export function grpcMessageAsSpecified(res: UniversalServerResponse, requestHeader: Headers): UniversalServerResponse {
  const type = (requestHeader.get("content-type") ?? "").toLowerCase();
  if (!type.startsWith("application/grpc") || type.startsWith("application/grpc-web")) return res;
  const fix = () => {
    for (const h of [res.header, res.trailer]) {
      const raw = h?.get("grpc-message");
      if (raw) h!.set("grpc-message", grpcPercentEncode(percentDecode(raw)));
    }
  };
  // A settled response (decode.ts: every unary one) has its final trailers already.
  if (!res.body || isSettled(res.body)) {
    fix();
    return res;
  }
  const body = res.body;
  return {
    ...res,
    body: (async function* () {
      try {
        yield* body;
      } finally {
        fix();
      }
    })(),
  };
}

function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** grpcPercentEncode is the gRPC spec's Percent-Encoded form of a status message (UTF-8 bytes outside 0x20–0x7E, and "%"). */
export function grpcPercentEncode(message: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(message)) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, "0")}` : String.fromCharCode(byte);
  }
  return out;
}
