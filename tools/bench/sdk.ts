/**
 * `npm run bench:sdk`: what the SDK costs over a bare generated client, in
 * the same run against the same servers (each its own process, as in
 * production, on a fresh database dropped after).
 *
 * 1. Unary: GetProduct latency at concurrency 1 through the SDK client and
 *    through a bare generated client (createClient + an auth interceptor),
 *    over gRPC and over Connect (HTTP/1.1). The series are interleaved in
 *    rounds so drift (JIT, the database's caches) hits all of them alike.
 * 2. Upload: one CSV of BENCH_SDK_ROWS rows (default 500,000; all valid) as
 *    a dry run: uploaded, parsed, validated and staged, not applied, so the
 *    upload path is what is measured. Variants: the SDK over gRPC (client
 *    streaming), the SDK over Connect (HTTP/1.1, which uploads in resumable
 *    parts), the SDK's resumable parts over gRPC (1 MiB parts), and the
 *    baseline: a bare generated-client UploadBulkFile stream of the file
 *    (1 MiB messages). MB/s = file bytes / wall time until the call returned
 *    with the staged job; items/s = the job's item count / the same time.
 *    Every upload is made by a fresh merchant, so the server's
 *    same-content dedupe never turns a repeat into a shortcut.
 *
 * BENCH_CALLS (default 3000 per unary series), BENCH_UPLOAD_RUNS (default 2
 * per variant, interleaved). Exits non-zero only on errors.
 */
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { BulkFileFormat, BulkJobState, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { BulkJobService } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { bulkMigrations } from "@stockroom/bulk";
import { catalogMigrations } from "@stockroom/catalog";
import { createMerchant } from "@stockroom/common/rpc";
import { readInt } from "@stockroom/common";
import { createDatabase, type CommonTables } from "@stockroom/common/db";
import { connectNats } from "@stockroom/common/nats";
// biome-ignore lint/style/noRestrictedImports: the bench measures the SDK as written, without building its dist first
import { createStockroomClient } from "../../sdk/src/index.ts";
import { generateBulkFile } from "../gen-bulk-file.ts";
import { startServerProcess, type ServerProcess } from "./server-process.ts";
import { round, summarize, table, writeResults, type Summary } from "./stats.ts";

const CALLS = readInt(process.env, "BENCH_CALLS", 3000, 10, 1_000_000);
const ROWS = readInt(process.env, "BENCH_SDK_ROWS", 500_000, 1000, 500_000);
const UPLOAD_RUNS = readInt(process.env, "BENCH_UPLOAD_RUNS", 2, 1, 20);
const ROUND = 250;
const WARMUP = 300;
const root = path.join(import.meta.dirname, "..", "..");
const id = Date.now().toString(36);

function bare<S extends Parameters<typeof createClient>[0]>(
  service: S,
  server: ServerProcess,
  protocol: "grpc" | "connect",
  apiKey = server.apiKey,
): Client<S> {
  const auth: Interceptor = (next) => (req) => {
    req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: server.url, interceptors: [auth] })
      : createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", useBinaryFormat: true, interceptors: [auth] });
  return createClient(service, transport);
}

// ---- unary -------------------------------------------------------------------

async function unary(): Promise<Record<string, Summary>> {
  const server = await startServerProcess({
    name: "bench_sdk_catalog",
    entrypoint: path.join(root, "services", "catalog", "src", "main.ts"),
    migrations: [catalogMigrations],
  });
  const sdk = {
    grpc: createStockroomClient({ baseUrl: server.url, apiKey: server.apiKey, transport: "grpc" }),
    connect: createStockroomClient({ baseUrl: server.url, apiKey: server.apiKey, transport: "connect" }),
  };
  try {
    const sku = "BENCH-SDK-1";
    await sdk.grpc.catalog.createProduct({
      product: { sku, title: "Benchmark mug", price: { currencyCode: "EUR", minorUnits: 1290n }, stock: 5 },
    });
    const bareGrpc = bare(CatalogService, server, "grpc");
    const bareConnect = bare(CatalogService, server, "connect");
    const series: Record<string, (sku: string) => Promise<unknown>> = {
      "bare grpc": (s) => bareGrpc.getProduct({ sku: s }),
      "sdk grpc": (s) => sdk.grpc.catalog.getProduct({ sku: s }),
      "bare connect": (s) => bareConnect.getProduct({ sku: s }),
      "sdk connect": (s) => sdk.connect.catalog.getProduct({ sku: s }),
    };
    const latencies: Record<string, number[]> = Object.fromEntries(Object.keys(series).map((k) => [k, []]));
    for (const call of Object.values(series)) for (let i = 0; i < WARMUP; i++) await call(sku);
    const cpu: Record<string, number> = Object.fromEntries(Object.keys(series).map((k) => [k, 0]));
    const wall: Record<string, number> = Object.fromEntries(Object.keys(series).map((k) => [k, 0]));
    for (let done = 0; done < CALLS; done += ROUND) {
      for (const [name, call] of Object.entries(series)) {
        const cpu0 = process.cpuUsage();
        const w0 = performance.now();
        for (let i = 0; i < Math.min(ROUND, CALLS - done); i++) {
          const t0 = performance.now();
          await call(sku);
          latencies[name]!.push(performance.now() - t0);
        }
        wall[name]! += performance.now() - w0;
        const c = process.cpuUsage(cpu0);
        cpu[name]! += (c.user + c.system) / 1000;
      }
    }
    return Object.fromEntries(
      Object.entries(latencies).map(([name, l]) => [
        name,
        summarize({ latencies: l, failures: 0, errors: [], wallMs: wall[name]!, cpuMs: cpu[name]! }),
      ]),
    );
  } finally {
    sdk.grpc.close();
    sdk.connect.close();
    await server.stop();
  }
}

// ---- upload ------------------------------------------------------------------

interface UploadResult {
  runs: number;
  items: number;
  bestMBps: number;
  medianMBps: number;
  medianItemsPerS: number;
  medianS: number;
}

async function upload(): Promise<{ fileBytes: number; results: Record<string, UploadResult> }> {
  const dir = mkdtempSync(path.join(tmpdir(), "stockroom-bench-sdk-"));
  const file = path.join(dir, "products.csv");
  await pipeline(
    Readable.from(generateBulkFile({ rows: ROWS, format: "csv", seed: 42, skuPrefix: "BENCH-" }).chunks),
    createWriteStream(file),
  );
  const size = statSync(file).size;
  console.log(`  file: ${ROWS} rows, ${round(size / 1e6, 1)} MB`);
  const queue = { BULK_STREAM: `BENCH_SDK_${id}`, BULK_SUBJECT_PREFIX: `bench.sdk.${id}`, BULK_DURABLE: `bench-sdk-${id}` };
  const server = await startServerProcess({
    name: "bench_sdk_bulk",
    entrypoint: path.join(root, "services", "bulk", "src", "main.ts"),
    migrations: [catalogMigrations, bulkMigrations],
    env: queue,
  });
  const db = createDatabase<CommonTables>({ url: server.databaseUrl, poolSize: 1 });
  let n = 0;
  /** Each upload runs as a fresh merchant: the server dedupes the same content per merchant, after staging. */
  const freshKey = async () => (await createMerchant(db, `Upload benchmark ${++n}`)).apiKey;
  const viaSdk = (transport: "grpc" | "connect", method: "stream" | "parts") => async (): Promise<BulkJob> => {
    const c = createStockroomClient({ baseUrl: server.url, apiKey: await freshKey(), transport });
    try {
      return await c.uploadBulkFile(file, { dryRun: true, method });
    } finally {
      c.close();
    }
  };
  const variants: Record<string, () => Promise<BulkJob>> = {
    "bare generated client stream (grpc)": async () => {
      const client = bare(BulkJobService, server, "grpc", await freshKey());
      async function* requests() {
        yield { payload: { case: "options" as const, value: { format: BulkFileFormat.CSV, dryRun: true, requestId: `bench-${id}-${n}` } } };
        for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 }))
          yield { payload: { case: "chunk" as const, value: chunk as Buffer } };
      }
      return (await client.uploadBulkFile(requests())).job!;
    },
    "sdk grpc (client streaming)": viaSdk("grpc", "stream"),
    "sdk connect (resumable parts, HTTP/1.1)": viaSdk("connect", "parts"),
    "sdk resumable parts (grpc)": viaSdk("grpc", "parts"),
  };
  const seconds: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
  const items: Record<string, number> = {};
  try {
    for (let run = 0; run < UPLOAD_RUNS; run++) {
      for (const [name, call] of Object.entries(variants)) {
        const t0 = performance.now();
        const job = await call();
        const s = (performance.now() - t0) / 1000;
        if (job.state !== BulkJobState.SUCCEEDED)
          throw new Error(`${name}: the dry run ended ${BulkJobState[job.state]} ${job.error ?? ""}`);
        const total = Number(job.counts?.total ?? 0n);
        if (total !== ROWS || Number(job.fileSize) !== size)
          throw new Error(`${name}: the job counted ${total} items of ${job.fileSize} bytes, not ${ROWS} of ${size}`);
        items[name] = total;
        seconds[name]!.push(s);
        console.log(`  run ${run + 1}, ${name}: ${round(s, 2)} s, ${round(size / 1e6 / s, 2)} MB/s, ${Math.round(total / s)} items/s`);
      }
    }
  } finally {
    await db.destroy();
    await server.stop();
    const nats = await connectNats({ servers: process.env["NATS_URL"] ?? "127.0.0.1:4222", name: "bench-sdk-cleanup" });
    await nats.jsm.streams.delete(queue.BULK_STREAM).catch(() => {});
    await nats.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const results = Object.fromEntries(
    Object.entries(seconds).map(([name, s]) => {
      const sorted = [...s].sort((a, b) => a - b);
      const mid = sorted.length / 2;
      const median = sorted.length % 2 ? sorted[Math.floor(mid)]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
      const r: UploadResult = {
        runs: s.length,
        items: items[name]!,
        bestMBps: round(size / 1e6 / sorted[0]!, 2),
        medianMBps: round(size / 1e6 / median, 2),
        medianItemsPerS: Math.round(items[name]! / median),
        medianS: round(median, 3),
      };
      return [name, r];
    }),
  );
  return { fileBytes: size, results };
}

console.log(`unary GetProduct, concurrency 1, ${CALLS} calls per series…`);
const latency = await unary();
console.log(
  table(
    ["series", "p50 ms", "p99 ms", "mean ms", "cpu ms/call"],
    Object.entries(latency).map(([name, s]) => [name, s.p50Ms, s.p99Ms, s.meanMs, s.cpuMsPerCall]),
  ),
);
const overhead = {
  grpcP50Ms: round(latency["sdk grpc"]!.p50Ms - latency["bare grpc"]!.p50Ms),
  grpcP99Ms: round(latency["sdk grpc"]!.p99Ms - latency["bare grpc"]!.p99Ms),
  connectP50Ms: round(latency["sdk connect"]!.p50Ms - latency["bare connect"]!.p50Ms),
  connectP99Ms: round(latency["sdk connect"]!.p99Ms - latency["bare connect"]!.p99Ms),
};
console.log(
  `SDK overhead: gRPC p50 ${overhead.grpcP50Ms} ms, p99 ${overhead.grpcP99Ms} ms; Connect p50 ${overhead.connectP50Ms} ms, p99 ${overhead.connectP99Ms} ms`,
);

console.log(
  `\nupload of a ${ROWS}-row CSV, dry runs (uploaded, parsed, validated and staged; not applied), ${UPLOAD_RUNS} runs per variant, interleaved…`,
);
const uploads = await upload();
const baseline = uploads.results["bare generated client stream (grpc)"]!;
console.log(
  table(
    ["variant", "median MB/s", "median items/s", "best MB/s", "median s", "vs bare stream"],
    Object.entries(uploads.results).map(([name, r]) => [
      name,
      r.medianMBps,
      r.medianItemsPerS,
      r.bestMBps,
      r.medianS,
      `${round(r.medianMBps / baseline.medianMBps, 2)}x`,
    ]),
  ),
);
console.log(`(MB = 10^6 bytes of the ${round(uploads.fileBytes / 1e6, 1)} MB file; time until the call returned the staged job)`);
const file = writeResults("sdk", {
  calls: CALLS,
  rows: ROWS,
  unary: { concurrency: 1, series: latency, sdkOverhead: overhead },
  upload: {
    fileBytes: uploads.fileBytes,
    dryRun: true,
    freshMerchantPerUpload: true,
    runsPerVariant: UPLOAD_RUNS,
    variants: uploads.results,
  },
});
console.log(`\nresults: ${path.relative(root, file)}`);
