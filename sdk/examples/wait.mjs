// Wait for a job's final state, giving up after a while.
// STOCKROOM_API_KEY=srk_... node wait.mjs JOB_ID [TIMEOUT_MS]
import { BulkJobState, Code, createStockroomClient, StockroomError } from "@stockroom/sdk";

const [jobId, timeoutMs = "600000"] = process.argv.slice(2);
if (!jobId) throw new Error("usage: node wait.mjs JOB_ID [TIMEOUT_MS]");
const stockroom = createStockroomClient({
  baseUrl: process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.STOCKROOM_API_KEY,
});
try {
  const job = await stockroom.waitForBulkJob(jobId, { timeoutMs: Number(timeoutMs) });
  console.log(`${job.id}: ${BulkJobState[job.state]}, ${job.counts.applied} applied, ${job.counts.invalid} invalid ${job.error}`);
} catch (error) {
  if (error instanceof StockroomError && error.code === Code.DeadlineExceeded)
    console.log(`${jobId} is still running after ${timeoutMs} ms`);
  else throw error;
} finally {
  stockroom.close();
}
