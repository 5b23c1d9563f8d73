/**
 * Helpers shared by the benchmarks that drive bulk jobs (bench:bulk,
 * bench:events): the generated CSV file, worker processes as Nomad runs
 * them, the client-streaming upload and waiting for a job's final state.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createReadStream, createWriteStream, statSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { BulkFileFormat, BulkJobState, ConflictPolicy, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import type { BulkJobService, UploadBulkFileRequestSchema } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_service_pb.js";
import { generateBulkFile } from "../gen-bulk-file.ts";

export const root = path.join(import.meta.dirname, "..", "..");
export const apiMain = path.join(root, "services", "bulk", "src", "main.ts");
export const workerMain = path.join(root, "services", "bulk", "src", "worker-main.ts");
/** BENCH_PROFILE=1: CPU profiles of the child processes go to bench-results/profiles/. */
export const profileArgs =
  process.env["BENCH_PROFILE"] === "1" ? ["--cpu-prof", `--cpu-prof-dir=${path.join(root, "bench-results", "profiles")}`] : [];

/** nodeArgs reads a bench variable of V8 flags (set to "" for V8's defaults). */
const nodeArgs = (name: string, nomad: string) => (process.env[name] ?? nomad).split(" ").filter(Boolean);
/** The bulk API's V8 heap settings, as nomad/bulk.nomad.hcl runs it (BENCH_API_NODE_ARGS overrides; deploy-config.test.ts holds them equal). */
export const API_NODE_ARGS = nodeArgs("BENCH_API_NODE_ARGS", "--max-old-space-size=256 --max-semi-space-size=8 --heap-growing-percent=100");
/**
 * A bulk worker's V8 flags, as nomad/bulk.nomad.hcl runs it: none (BENCH_WORKER_NODE_ARGS overrides). Its
 * heap grows to some 450 MB over a 500k-row job; capped at 192 MB it stayed near 210 MB but spent 20-35%
 * more CPU, so Nomad reserves the memory instead.
 */
export const WORKER_NODE_ARGS = nodeArgs("BENCH_WORKER_NODE_ARGS", "");

export const FINAL_STATES = new Set([
  BulkJobState.SUCCEEDED,
  BulkJobState.PARTIALLY_SUCCEEDED,
  BulkJobState.FAILED,
  BulkJobState.CANCELLED,
  BulkJobState.ROLLED_BACK,
]);

export interface FileInfo {
  path: string;
  bytes: number;
  columns: readonly string[];
  generateMs: number;
}

/** generateCsv writes a CSV of `rows` valid items (fixed seed) into dir. */
export async function generateCsv(dir: string, rows: number, seed: number): Promise<FileInfo> {
  const t0 = performance.now();
  const file = generateBulkFile({ rows, format: "csv", seed, invalidRate: 0 });
  const out = path.join(dir, `bulk-${rows}.csv`);
  await pipeline(Readable.from(file.chunks), createWriteStream(out));
  if (file.expected.validLines() !== rows) throw new Error(`the generated file has ${file.expected.invalid.size} invalid lines`);
  return { path: out, bytes: statSync(out).size, columns: file.columns, generateMs: performance.now() - t0 };
}

type UploadRequest = MessageInitShape<typeof UploadBulkFileRequestSchema>;

/** uploadOptions are the job options both upload paths send: a CSV file, overwrite policy. */
function uploadOptions(file: string, requestId: string) {
  return { format: BulkFileFormat.CSV, conflictPolicy: ConflictPolicy.OVERWRITE, fileName: path.basename(file), requestId };
}

/** uploadRequests is UploadBulkFile's request stream for a CSV file (overwrite policy); onLastByte runs once the file is read. */
export async function* uploadRequests(file: string, requestId: string, onLastByte?: () => void): AsyncIterable<UploadRequest> {
  yield { payload: { case: "options", value: uploadOptions(file, requestId) } };
  for await (const chunk of createReadStream(file, { highWaterMark: 64 * 1024 })) {
    yield { payload: { case: "chunk", value: chunk as Buffer } };
  }
  onLastByte?.();
}

/** PART_BYTES is the part size of resumable uploads, as the dashboard sends them. */
const PART_BYTES = 1024 * 1024;

/**
 * uploadInParts uploads a CSV file as the SDK and the dashboard do by
 * default: CreateUpload, AppendUploadPart of 1 MiB parts one after the
 * other, CompleteUpload; onLastByte runs once the last part is committed.
 */
export async function uploadInParts(
  client: Client<typeof BulkJobService>,
  file: string,
  requestId: string,
  onLastByte?: () => void,
): Promise<BulkJob | undefined> {
  const size = statSync(file).size;
  const { upload } = await client.createUpload({ options: uploadOptions(file, requestId), expectedSize: BigInt(size) });
  let offset = 0;
  for await (const part of createReadStream(file, { highWaterMark: PART_BYTES })) {
    await client.appendUploadPart({ uploadId: upload!.id, offset: BigInt(offset), data: part as Buffer });
    offset += (part as Buffer).length;
  }
  onLastByte?.();
  return (await client.completeUpload({ uploadId: upload!.id, totalSize: BigInt(size) })).job;
}

/**
 * startWorker runs one worker process. Its warnings (a chunk delivery that
 * failed and will be redelivered) are counted by message and error into
 * warnings rather than printed; errors and anything else pass through.
 */
export function startWorker(env: Record<string, string>, warnings: Map<string, number>): ChildProcess {
  const child = spawn(process.execPath, [...profileArgs, ...WORKER_NODE_ARGS, workerMain], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: "warn", ...env },
    stdio: ["ignore", "inherit", "pipe"],
  });
  createInterface({ input: child.stderr! }).on("line", (line) => {
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string; error?: { message?: string } };
      if (entry.level === "warn") {
        const key = `${entry.msg}${entry.error?.message ? `: ${entry.error.message}` : ""}`;
        warnings.set(key, (warnings.get(key) ?? 0) + 1);
        return;
      }
    } catch {
      // not a log line
    }
    process.stderr.write(`${line}\n`);
  });
  return child;
}

/** stopChild sends SIGTERM and waits for the exit, with SIGKILL after timeoutMs. */
export async function stopChild(child: ChildProcess, timeoutMs = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  await exited;
  clearTimeout(timer);
}

/** until polls probe (errors count as "not yet") every 100 ms until it returns a value, or fails naming what it waited for. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
