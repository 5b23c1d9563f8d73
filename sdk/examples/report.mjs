// Stream a job's report (only the lines that need attention) to stdout.
// STOCKROOM_API_KEY=srk_... node report.mjs JOB_ID > problems.csv
import { BulkItemOutcome, createStockroomClient } from "@stockroom/sdk";

const jobId = process.argv[2];
if (!jobId) throw new Error("usage: node report.mjs JOB_ID");
const stockroom = createStockroomClient({
  baseUrl: process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.STOCKROOM_API_KEY,
});
const report = stockroom.downloadBulkJobReport(jobId, {
  outcomes: [BulkItemOutcome.INVALID, BulkItemOutcome.CONFLICT, BulkItemOutcome.FAILED],
});
for await (const chunk of report) process.stdout.write(chunk);
stockroom.close();
