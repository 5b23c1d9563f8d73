import { createJob, type NewJob } from "../src/jobs.ts";
import type { BulkDb } from "../src/store.ts";

/**
 * csvJob creates a bulk job as most tests want one: CSV, overwrite, applied
 * (not a dry run), no request_id; options override any of those.
 */
export function csvJob(
  db: BulkDb,
  merchantId: string,
  fileName: string,
  options: Partial<Omit<NewJob, "merchantId" | "fileName">> = {},
): Promise<{ jobId: string; existing: boolean }> {
  return createJob(db, { merchantId, requestId: "", format: "csv", conflictPolicy: "overwrite", dryRun: false, fileName, ...options });
}
