/**
 * Type tests: `npx tsc -p .` compiles this file and never runs it. Each
 * @ts-expect-error line must fail to compile, so a mistyped field, a missing
 * argument or a wrong option is caught before the code ever runs (tsc
 * reports an unused @ts-expect-error as an error, so the checks cannot rot).
 */
import { createStockroomClient, ConflictError, RateLimitedError, ValidationError, BulkJobState, type BulkJobUpdate } from "../src/index.ts";
import { createStockroomClient as createWebClient } from "../src/web.ts";

export async function typeTests(file: Blob) {
  const node = createStockroomClient({ baseUrl: "http://127.0.0.1:8080", apiKey: "srk_x" });
  createStockroomClient({
    baseUrl: "http://127.0.0.1:8080",
    apiKey: () => "srk_x",
    transport: "grpc-web",
    timeoutMs: 5_000,
    retry: { maxAttempts: 2 },
  });
  // @ts-expect-error the API key is required
  createStockroomClient({ baseUrl: "http://127.0.0.1:8080" });
  // @ts-expect-error not a transport
  createStockroomClient({ baseUrl: "http://127.0.0.1:8080", apiKey: "k", transport: "http" });
  // @ts-expect-error browsers cannot speak gRPC
  createWebClient({ baseUrl: "https://api.example", apiKey: "k", transport: "grpc" });
  // @ts-expect-error not a retry option
  createStockroomClient({ baseUrl: "http://127.0.0.1:8080", apiKey: "k", retry: { attempts: 3 } });

  // Requests are checked field by field.
  await node.catalog.createProduct({ product: { sku: "MUG-1", title: "Mug", price: { currencyCode: "EUR", minorUnits: 1290n } } });
  // @ts-expect-error misspelled field
  await node.catalog.createProduct({ product: { sku: "MUG-1", titel: "Mug" } });
  // @ts-expect-error minor units are int64 (bigint), not a number
  await node.catalog.createProduct({ product: { sku: "MUG-1", price: { currencyCode: "EUR", minorUnits: 12.9 } } });
  // @ts-expect-error no such field
  await node.catalog.getProduct({ skuu: "MUG-1" });
  // @ts-expect-error no such method
  await node.catalog.getProducts({});
  // @ts-expect-error the request is required
  await node.bulk.getBulkJob();
  const { product } = await node.catalog.getProduct({ sku: "MUG-1" }, { timeoutMs: 1_000 });
  const version: bigint | undefined = product?.version;
  void version;

  // Helpers.
  const job = await node.uploadBulkFile("products.csv", { conflictPolicy: "skip", dryRun: true, onProgress: (p) => p.bytesSent.toFixed() });
  await node.uploadBulkFile(file, { format: "jsonl", requestId: "r-1" });
  // @ts-expect-error not a format
  await node.uploadBulkFile(file, { format: "xml" });
  // @ts-expect-error not a conflict policy
  await node.uploadBulkFile(file, { conflictPolicy: "merge" });
  // @ts-expect-error progress has no such field
  await node.uploadBulkFile(file, { onProgress: (p) => p.percent });
  // @ts-expect-error the source is required
  await node.uploadBulkFile();
  const web = createWebClient({ baseUrl: "https://api.example", apiKey: "k" });
  await web.uploadBulkFile(file);
  // @ts-expect-error a browser has no file paths
  await web.uploadBulkFile("products.csv");
  // @ts-expect-error the job id is required
  await node.waitForBulkJob();
  // @ts-expect-error the timeout is a number of ms
  await node.waitForBulkJob(job.id, { timeoutMs: "1m" });
  for await (const update of node.watchBulkJob(job.id)) {
    const u: BulkJobUpdate = update;
    const applied: bigint | undefined = u.job.counts?.applied;
    const final: boolean = u.job.state === BulkJobState.SUCCEEDED;
    void applied, void final;
  }
  const report: AsyncIterable<Uint8Array> = node.downloadBulkJobReport(job.id);
  const stream: ReadableStream<Uint8Array> = node.downloadBulkJobReport(job.id).readableStream();
  void report, void stream;

  // Errors carry typed details.
  try {
    await node.catalog.updateProduct({ product: { sku: "MUG-1", etag: "x" } });
  } catch (e) {
    if (e instanceof ConflictError) {
      const etag: string = e.currentEtag;
      void etag;
    }
    if (e instanceof ValidationError) for (const v of e.fieldViolations) void v.field.toUpperCase();
    if (e instanceof RateLimitedError) {
      // @ts-expect-error the delay may be absent
      const delay: number = e.retryDelayMs;
      void delay;
    }
  }
}
