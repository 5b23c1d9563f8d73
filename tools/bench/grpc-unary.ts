/**
 * A load generator's gRPC client: unary calls over node:http2, framed by
 * hand, on a few connections used in turn. A generated client's own CPU per
 * call (connect-node: about 0.8 ms per CreateOrder on this 2-core machine,
 * as much as the orders server's) is spent on the cores the server under
 * test runs on, so a bench driving it measures itself: in bench:spike its
 * backlog, in bench:orders' closed loop a cycle that waits on the client as
 * long as on the server. This client costs a fraction of that. The SDK is
 * measured as such where a bench says so (bench:spike's SDK share,
 * bench:sdk).
 *
 * A non-OK status is thrown as a ConnectError with its details (RetryInfo
 * among them); a stream the server resets is mapped as gRPC maps HTTP/2
 * codes (resetError, the API server's own mapping: ENHANCE_YOUR_CALM, Node's
 * flood and memory protection, is RESOURCE_EXHAUSTED without RetryInfo).
 */
import http2 from "node:http2";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { withoutStacks } from "@stockroom/common";
import { resetError } from "@stockroom/common/rpc";
import { grpcErrorOf } from "@stockroom/common/testing";
import { tally } from "./stats.ts";

export interface UnaryClient {
  /** call sends one unary call on the next connection. */
  call<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, request: MessageInitShape<I>): Promise<MessageShape<O>>;
  /** Connections the server closed (GOAWAY) or lost, by error, each replaced by a new one as a client reconnects. */
  lost: Map<string, number>;
  close(): void;
}

export function createUnaryClient(options: { url: string; apiKey: string; connections: number }): UnaryClient {
  const lost = new Map<string, number>();
  const connect = () => {
    // The session's own memory cap lifted (as the SDK's is): a client falling behind must not reset its own calls.
    const session = http2.connect(options.url, { maxSessionMemory: Number.MAX_SAFE_INTEGER });
    // The calls open on it fail on their own streams; the session's error is counted here.
    session.on("error", (error: NodeJS.ErrnoException) => tally(lost, `${error.code ?? ""} ${error.message}`));
    return session;
  };
  const sessions = Array.from({ length: options.connections }, connect);
  const authorization = `Bearer ${options.apiKey}`;
  let next = 0;
  /** session is the next connection in turn, replaced first if it is gone. */
  const session = () => {
    const i = next++ % sessions.length;
    const s = sessions[i]!;
    if (!s.closed && !s.destroyed) return s;
    sessions[i] = connect();
    return sessions[i];
  };

  return {
    lost,
    close: () => {
      for (const s of sessions) s.close();
    },
    call<I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>, request: MessageInitShape<I>) {
      const message = toBinary(method.input, create(method.input, request));
      const frame = Buffer.alloc(5 + message.length);
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      return new Promise<MessageShape<O>>((resolve, reject) => {
        const stream = session().request({
          ":method": "POST",
          ":path": `/${method.parent.typeName}/${method.name}`,
          "content-type": "application/grpc+proto",
          te: "trailers",
          authorization,
        });
        const chunks: Buffer[] = [];
        let status: http2.IncomingHttpHeaders | undefined;
        const take = (headers: http2.IncomingHttpHeaders) => {
          if (headers["grpc-status"] !== undefined) status = headers;
        };
        stream.on("response", take);
        stream.on("trailers", take);
        stream.on("data", (chunk: Buffer) => chunks.push(chunk));
        stream.on("error", (error) => reject(resetError(stream.rstCode) ?? error));
        stream.on("close", () => {
          if (!status) return reject(new ConnectError(`stream closed (${stream.rstCode}) without a gRPC status`, Code.Unavailable));
          const error = statusError(status);
          if (error) return reject(error);
          resolve(fromBinary(method.output, Buffer.concat(chunks).subarray(5)));
        });
        stream.end(frame);
      });
    },
  };
}

/**
 * statusError is grpcErrorOf, kept per status, message and details: in a
 * spike most answers are the same few refusals, and parsing each one again
 * (a Headers object, the status details decoded, an error with its stack)
 * took a quarter of a load thread's CPU, on the cores the server under test
 * needs. The errors handed out are shared: read them, never change them.
 */
function statusError(headers: http2.IncomingHttpHeaders): ConnectError | undefined {
  const status = headers["grpc-status"];
  if (status === "0") return undefined;
  const key = `${String(status)}\n${String(headers["grpc-message"])}\n${String(headers["grpc-status-details-bin"])}`;
  let error = errors.get(key);
  if (!error) {
    error = withoutStacks(() => grpcErrorOf(headers));
    if (!error) return undefined;
    if (errors.size >= 1024) errors.clear();
    errors.set(key, error);
  }
  return error;
}
const errors = new Map<string, ConnectError>();
