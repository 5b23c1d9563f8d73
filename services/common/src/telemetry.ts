import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { NodeSDK } from "@opentelemetry/sdk-node";

/**
 * startTelemetry starts the OpenTelemetry SDK exporting OTLP (which Jaeger
 * accepts directly) when an endpoint is configured; without one, tracing
 * stays a no-op. The SDK reads the standard OTEL_* variables itself.
 */
export function startTelemetry(options: { serviceName: string; otlpEndpoint?: string }): () => Promise<void> {
  if (!options.otlpEndpoint) return async () => {};
  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    traceExporter: new OTLPTraceExporter(),
    instrumentations: [],
  });
  sdk.start();
  return () => sdk.shutdown();
}
