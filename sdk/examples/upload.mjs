// Upload a CSV or JSON Lines file as a bulk job, follow it to the end, and
// save its per-item report next to the file.
// STOCKROOM_API_KEY=srk_... node upload.mjs products.csv
import { createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { BulkJobState, createStockroomClient } from "@stockroom/sdk";

const file = process.argv[2];
if (!file) throw new Error("usage: node upload.mjs FILE.csv|FILE.jsonl");
const stockroom = createStockroomClient({
  baseUrl: process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.STOCKROOM_API_KEY,
});

// The format comes from the file name; a requestId (here generated) makes a repeated call return the same job.
const job = await stockroom.uploadBulkFile(file, {
  onProgress: ({ bytesSent, totalBytes, itemsValidated }) =>
    console.log(itemsValidated === undefined ? `sent ${bytesSent} of ${totalBytes} bytes` : `staged: ${itemsValidated} items`),
});
console.log(`job ${job.id}: ${BulkJobState[job.state]}`);

for await (const { job: now, progress } of stockroom.watchBulkJob(job.id)) {
  const c = now.counts;
  console.log(
    `${BulkJobState[now.state]}: ${c.applied} applied, ${c.unchanged} unchanged, ${c.invalid} invalid${progress?.itemsPerSecond ? ` (${Math.round(progress.itemsPerSecond)}/s)` : ""}`,
  );
}

const out = `${file.replace(/\.[^.]+$/, "")}.report.csv`;
await pipeline(Readable.from(stockroom.downloadBulkJobReport(job.id)), createWriteStream(out));
console.log(`report: ${out}`);
stockroom.close();
