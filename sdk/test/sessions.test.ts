import { fork } from "node:child_process";
import path from "node:path";
import test from "ava";
import { Code } from "@connectrpc/connect";
import { createStockroomClient, StockroomError } from "../src/index.ts";

// An application with many calls in flight on its one HTTP/2 connection,
// too busy to read their answers for a while: Node's default cap on a
// session's memory (10 MB) reset its streams with ENHANCE_YOUR_CALM and
// then tore the session down, so calls failed that the server had answered
// (with 15,000 calls, about 100 resets and thousands of INTERNAL/CANCEL).
// The server here is a bare one in its own process (fixtures/not-found-server.ts):
// what is tested is the client's session, not the stockroom server's answer.
test("15,000 calls in flight on one connection from a client too busy to read: each gets its server's answer", async (t) => {
  const server = fork(path.join(import.meta.dirname, "fixtures", "not-found-server.ts"), { stdio: "inherit" });
  t.teardown(() => server.kill());
  const port = await new Promise<number>((resolve) => server.once("message", (m) => resolve(m as number)));
  const sdk = createStockroomClient({ baseUrl: `http://127.0.0.1:${port}`, apiKey: "sk_test" });
  t.teardown(() => sdk.close());

  const outcomes = new Map<string, number>();
  const calls: Promise<void>[] = [];
  for (let burst = 0; burst < 5; burst++) {
    for (let i = 0; i < 3000; i++) {
      calls.push(
        sdk.catalog.getProduct({ sku: `S-${burst}-${i}` }).then(
          () => void outcomes.set("ok", (outcomes.get("ok") ?? 0) + 1),
          (error: unknown) => {
            const key = error instanceof StockroomError ? Code[error.code] : String(error);
            outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
          },
        ),
      );
    }
    // The application's event loop is busy while the answers arrive.
    const until = Date.now() + 300;
    while (Date.now() < until);
    await new Promise((resolve) => setImmediate(resolve));
  }
  await Promise.all(calls);
  t.deepEqual(Object.fromEntries(outcomes), { NotFound: 15_000 });
});
