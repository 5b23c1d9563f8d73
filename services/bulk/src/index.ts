/** @stockroom/bulk: the package's public face; everything else is internal. */
export { applyChunk } from "./apply.ts";
export { parseBulkConfig, workerSettings } from "./config.ts";
export { slotBucket } from "./host-slots.ts";
export { createJob } from "./jobs.ts";
export { bulkMetrics, type BulkMetrics } from "./metrics.ts";
export { bulkModule } from "./module.ts";
export { DEFAULT_QUEUE, ensureChunkQueue } from "./queue.ts";
export { type ParsedLine, finishStaging, stageLines } from "./stage.ts";
export { type BulkDb, type BulkJobRow, type BulkTables, bulkMigrations } from "./store.ts";
export { startBulkWorker } from "./worker.ts";
