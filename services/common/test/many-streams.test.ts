import http2 from "node:http2";
import test from "ava";
import { catalogModule } from "@stockroom/catalog";
import { startTestApi } from "../testing/index.ts";

// A file of its own: its 15,000 calls keep the process's event loop busy for seconds, which would
// stretch another test's timings in the same process (server.test.ts's drain has a deadline).
test("one HTTP/2 connection carrying 15,000 concurrent calls has every one answered: Node's per-session memory cap does not reset them and tear the session down", async (t) => {
  const api = await startTestApi("server_many_streams", (db) => [catalogModule(db)]);
  t.teardown(() => api.close().catch(() => {}));
  // The client's own session cap is lifted as the SDK's is: this tests the server's.
  const session = http2.connect(api.url, { maxSessionMemory: Number.MAX_SAFE_INTEGER });
  t.teardown(() => session.destroy());
  const sessionErrors: string[] = [];
  session.on("error", (e: NodeJS.ErrnoException) => sessionErrors.push(String(e.code)));
  const check = Buffer.alloc(5); // one empty gRPC message: HealthCheckRequest{}
  const outcomes = await Promise.all(
    Array.from(
      { length: 15_000 },
      () =>
        new Promise<string>((resolve) => {
          const stream = session.request({
            ":method": "POST",
            ":path": "/grpc.health.v1.Health/Check",
            "content-type": "application/grpc",
            te: "trailers",
          });
          let status = "none";
          const take = (headers: http2.IncomingHttpHeaders) => {
            if (headers["grpc-status"] !== undefined) status = `grpc-status ${String(headers["grpc-status"])}`;
          };
          stream.on("response", take);
          stream.on("trailers", take);
          stream.on("data", () => {});
          stream.on("error", () => {});
          stream.on("close", () => resolve(stream.rstCode ? `reset ${stream.rstCode}` : status));
          stream.end(check);
        }),
    ),
  );
  const counts = new Map<string, number>();
  for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
  t.deepEqual(Object.fromEntries(counts), { "grpc-status 0": 15_000 });
  t.deepEqual(sessionErrors, []);
});
