/**
 * startTelemetry starts the OpenTelemetry SDK exporting OTLP (which Jaeger
 * accepts directly) when an endpoint is configured; without one, tracing
 * stays a no-op. The SDK and exporter are imported only then: they cost
 * about 100 MB of memory per process. The SDK reads the standard OTEL_*
 * variables itself.
 */
export async function startTelemetry(options: { serviceName: string; otlpEndpoint?: string }): Promise<() => Promise<void>> {
  if (!options.otlpEndpoint) return async () => {};
  const [{ NodeSDK }, { OTLPTraceExporter }] = await Promise.all([
    import("@opentelemetry/sdk-node"),
    import("@opentelemetry/exporter-trace-otlp-proto"),
  ]);
  const sdk = new NodeSDK({ serviceName: options.serviceName, traceExporter: new OTLPTraceExporter(), instrumentations: [] });
  sdk.start();
  return () => sdk.shutdown();
}
