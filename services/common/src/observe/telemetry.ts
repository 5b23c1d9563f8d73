/**
 * startTelemetry starts the OpenTelemetry SDK exporting traces over OTLP
 * (which Jaeger accepts directly) when an endpoint is configured; without
 * one, tracing stays a no-op. The SDK is imported only then: it costs about
 * 100 MB of memory per process.
 *
 * Traces only: metrics are Prometheus (metrics.ts) and logs go to stderr,
 * so the SDK's own metric and log exporters stay off. The SDK reads the
 * standard OTEL_* variables itself: the protocol
 * (OTEL_EXPORTER_OTLP_PROTOCOL, default http/protobuf), sampling
 * (OTEL_TRACES_SAMPLER, default parentbased_always_on), batching
 * (OTEL_BSP_*) and extra resource attributes (OTEL_RESOURCE_ATTRIBUTES).
 * Every span carries the resource of its process: service.name (one per
 * component: stockroom-catalog, stockroom-bulk-api, stockroom-bulk-worker,
 * …), service.instance.id (a UUID per process unless
 * OTEL_RESOURCE_ATTRIBUTES sets one, e.g. the Nomad allocation id),
 * process.pid, process.runtime.*, host.name and os.type.
 */
export async function startTelemetry(options: { serviceName: string; otlpEndpoint?: string }): Promise<() => Promise<void>> {
  if (!options.otlpEndpoint) return async () => {};
  const { NodeSDK } = await import("@opentelemetry/sdk-node");
  const sdk = new NodeSDK({
    serviceName: options.serviceName,
    metricReaders: [],
    logRecordProcessors: [],
    instrumentations: [],
  });
  sdk.start();
  // Flushing at shutdown is best effort: spans lost then must not fail the drain.
  return () => sdk.shutdown().catch(() => {});
}
