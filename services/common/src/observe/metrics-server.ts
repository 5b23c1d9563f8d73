import http from "node:http";
import type net from "node:net";
import type { Metrics } from "./metrics.ts";
import { listen } from "../listen.ts";

export interface MetricsServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/**
 * startMetricsServer serves, on its own port (METRICS_PORT):
 * - GET /metrics: the registry in Prometheus text format;
 * - GET /healthz: 200 while the process runs (liveness);
 * - GET /readyz: 200 while ready() (its dependencies answer and it is not
 *   draining), else 503. Processes without a gRPC port (bulk workers) are
 *   health-checked here; API processes also answer grpc.health.v1.
 */
export async function startMetricsServer(options: {
  host: string;
  port: number;
  metrics: Metrics;
  ready?: () => boolean;
}): Promise<MetricsServer> {
  const { registry } = options.metrics;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    if (path === "/metrics") {
      registry.metrics().then(
        (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
        (error: unknown) =>
          res.writeHead(500, { "content-type": "text/plain" }).end(`collecting metrics failed: ${(error as Error).message}\n`),
      );
    } else if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (path === "/readyz") {
      const ready = options.ready?.() ?? true;
      res.writeHead(ready ? 200 : 503, { "content-type": "text/plain" }).end(ready ? "ready\n" : "not ready\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("try /metrics, /healthz or /readyz\n");
    }
  });
  server.keepAliveTimeout = 65_000; // longer than Prometheus's idle timeout, so scrapes reuse connections
  await listen(server, options.port, options.host, `METRICS_PORT ${options.port} is in use (set METRICS_PORT=0 for any free port, or off)`);
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
