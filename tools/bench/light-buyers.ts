/**
 * bench:orders' light merchant, run as a child process of its own
 * (orders.ts forks it): a few buyers, each placing one single-line order
 * per pace over gRPC, measured from here. In the bench's own process the
 * light calls shared an event loop with the 64 hot buyers' clients, so
 * their latency counted that client's delays: in one run the orders server
 * held a light call 7.7 ms at the median (its own request-to-close time)
 * while the bench saw 35 ms. A bystander is a client of its own.
 *
 * argv: baseUrl apiKey buyers paceMs sku... IPC: "start" starts the buyers,
 * "stop" stops them and answers with a LightResult.
 */
import { setTimeout as delay } from "node:timers/promises";
import { createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";

export interface LightResult {
  latencies: number[];
  failures: number;
  errors: string[];
  wallMs: number;
}

const [baseUrl, apiKey, buyersArg, paceArg, ...skus] = process.argv.slice(2) as [string, string, string, string, ...string[]];
const auth: Interceptor = (next) => (req) => {
  req.header.set("authorization", `Bearer ${apiKey}`);
  return next(req);
};
const orders = createClient(OrderService, createGrpcTransport({ baseUrl, interceptors: [auth] }));
let requests = 0;
let stop: (() => Promise<LightResult>) | undefined;

process.on("message", (message) => {
  if (message === "start") stop = start();
  else if (message === "stop" && stop) void stop().then((result) => process.send?.(result));
});

function start(): () => Promise<LightResult> {
  let running = true;
  const latencies: number[] = [];
  const errors: string[] = [];
  let failures = 0;
  const t0 = performance.now();
  const buyers = Array.from({ length: Number(buyersArg) }, async () => {
    while (running) {
      const started = performance.now();
      try {
        const sku = skus[Math.floor(Math.random() * skus.length)]!;
        await orders.createOrder({
          requestId: `light-${process.pid}-${++requests}`,
          lines: [{ sku, quantity: 1 + Math.floor(Math.random() * 2) }],
        });
        latencies.push(performance.now() - started);
      } catch (error) {
        failures++;
        if (errors.length < 5) errors.push(error instanceof Error ? error.message : String(error));
      }
      await delay(Number(paceArg));
    }
  });
  return async () => {
    running = false;
    await Promise.all(buyers);
    return { latencies, failures, errors, wallMs: performance.now() - t0 };
  };
}
