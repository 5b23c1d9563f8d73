/**
 * Resumable uploads for browsers and flaky links: parts are stored in MySQL
 * as they arrive, keyed by byte offset. A part may repeat or overlap what was
 * received (the overlap must be identical, so a retried part is harmless); a
 * part that would leave a gap is refused with the committed size, which is
 * where the client resumes.
 */
import { deleteInBatches, insertRows, inTransaction, jsonColumn } from "@stockroom/common/db";
import { asBuffer, InvalidArgumentError, NotFoundError, PreconditionError, newUlid, ULID_PATTERN } from "@stockroom/common";
import type { NewJob } from "./jobs.ts";
import type { BulkDb, BulkTx, BulkUploadRow } from "./store.ts";

export const MAX_PART_BYTES = 4 * 1024 * 1024;

/** UploadOptions are the job options kept with an upload until it completes. */
export type UploadOptions = Omit<NewJob, "merchantId">;

export async function createUpload(
  db: BulkDb,
  merchantId: string,
  options: UploadOptions,
  expectedSize: number | null,
  ttlMs: number,
  now = new Date(),
): Promise<BulkUploadRow> {
  const row: BulkUploadRow = {
    merchant_id: merchantId,
    upload_id: newUlid(now.getTime()),
    options: JSON.stringify(options),
    expected_size: expectedSize,
    committed_size: 0,
    job_id: null,
    created_at: now,
    expires_at: new Date(now.getTime() + ttlMs),
  };
  await db.insertInto("bulk_uploads").values(row).execute();
  return row;
}

export async function findUpload(db: BulkDb, merchantId: string, uploadId: string, now = new Date()): Promise<BulkUploadRow> {
  if (!ULID_PATTERN.test(uploadId)) throw new InvalidArgumentError([{ field: "upload_id", description: "is not an upload id" }]);
  const row = await db
    .selectFrom("bulk_uploads")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("upload_id", "=", uploadId)
    .executeTakeFirst();
  if (!row || (row.job_id === null && row.expires_at < now)) throw new NotFoundError("upload", uploadId);
  return row;
}

export function uploadOptions(row: BulkUploadRow): UploadOptions {
  return jsonColumn<UploadOptions>(row.options);
}

/** appendPart stores the bytes of data beyond the committed size and returns the new committed size. */
export async function appendPart(
  db: BulkDb,
  merchantId: string,
  uploadId: string,
  offset: number,
  data: Uint8Array,
  now = new Date(),
): Promise<number> {
  const violations = [];
  if (!ULID_PATTERN.test(uploadId)) violations.push({ field: "upload_id", description: "is not an upload id" });
  if (!Number.isSafeInteger(offset) || offset < 0) violations.push({ field: "offset", description: "must be a byte offset ≥ 0" });
  if (data.length > MAX_PART_BYTES) violations.push({ field: "data", description: `must be at most ${MAX_PART_BYTES} bytes` });
  if (violations.length > 0) throw new InvalidArgumentError(violations);
  return inTransaction(db, async (trx) => {
    const upload = await trx
      .selectFrom("bulk_uploads")
      .selectAll()
      .where("merchant_id", "=", merchantId)
      .where("upload_id", "=", uploadId)
      .forUpdate()
      .executeTakeFirst();
    if (!upload || upload.expires_at < now) throw new NotFoundError("upload", uploadId);
    const committed = Number(upload.committed_size);
    if (upload.job_id !== null) throw new PreconditionError("UPLOAD_COMPLETED", "the upload was completed", { job_id: upload.job_id });
    if (offset > committed) {
      throw new PreconditionError("UPLOAD_GAP", `the part starts at ${offset} but only ${committed} bytes were received`, {
        committed_size: String(committed),
      });
    }
    const end = offset + data.length;
    if (upload.expected_size !== null && end > Number(upload.expected_size)) {
      throw new InvalidArgumentError([{ field: "data", description: `ends at ${end}, past the expected size ${upload.expected_size}` }]);
    }
    const overlap = Math.min(end, committed) - offset;
    if (overlap > 0 && !(await readRange(trx, merchantId, uploadId, offset, overlap)).equals(data.subarray(0, overlap))) {
      throw new PreconditionError("UPLOAD_OVERLAP_MISMATCH", `bytes ${offset}..${offset + overlap} differ from what was received`, {
        committed_size: String(committed),
      });
    }
    if (end > committed) {
      // insertRows sends the part as a prepared statement's binary value: as SQL text it was hex, twice
      // its size, built in this process and parsed by the database.
      await insertRows(trx, "bulk_upload_parts", [
        { merchant_id: merchantId, upload_id: uploadId, byte_offset: committed, data: asBuffer(data.subarray(overlap)) },
      ]);
      await trx
        .updateTable("bulk_uploads")
        .set({ committed_size: end })
        .where("merchant_id", "=", merchantId)
        .where("upload_id", "=", uploadId)
        .execute();
    }
    return Math.max(end, committed);
  });
}

/** readRange returns length bytes from offset of the stored parts. */
async function readRange(db: BulkDb | BulkTx, merchantId: string, uploadId: string, offset: number, length: number): Promise<Buffer> {
  const parts = await db
    .selectFrom("bulk_upload_parts")
    .select(["byte_offset", "data"])
    .where("merchant_id", "=", merchantId)
    .where("upload_id", "=", uploadId)
    .where("byte_offset", "<", offset + length)
    .orderBy("byte_offset")
    .execute();
  const pieces: Buffer[] = [];
  for (const p of parts) {
    const start = Number(p.byte_offset);
    const from = Math.max(offset - start, 0);
    const to = Math.min(offset + length - start, p.data.length);
    if (to > from) pieces.push(p.data.subarray(from, to));
  }
  return Buffer.concat(pieces);
}

/** readUpload streams an upload's bytes in order, one stored part at a time (bounded memory). */
export async function* readUpload(db: BulkDb, merchantId: string, uploadId: string): AsyncIterable<Uint8Array> {
  let next = 0;
  for (;;) {
    const part = await db
      .selectFrom("bulk_upload_parts")
      .select(["byte_offset", "data"])
      .where("merchant_id", "=", merchantId)
      .where("upload_id", "=", uploadId)
      .where("byte_offset", ">=", next)
      .orderBy("byte_offset")
      .limit(1)
      .executeTakeFirst();
    if (!part) return;
    yield part.data;
    next = Number(part.byte_offset) + part.data.length;
  }
}

/** completeUpload links the upload to its job, so a repeated CompleteUpload finds the same job. */
export async function linkUploadJob(db: BulkDb, merchantId: string, uploadId: string, jobId: string): Promise<void> {
  await db
    .updateTable("bulk_uploads")
    .set({ job_id: jobId })
    .where("merchant_id", "=", merchantId)
    .where("upload_id", "=", uploadId)
    .execute();
}

/**
 * pruneExpiredUploads removes up to `limit` resumable uploads past their
 * expiry with their stored parts, and returns how many (a maintenance sweep
 * over all merchants; each upload's rows are deleted by merchant-leading key).
 */
export async function pruneExpiredUploads(db: BulkDb, now: Date, limit: number): Promise<number> {
  const uploads = await db
    .selectFrom("bulk_uploads")
    .select(["merchant_id", "upload_id"])
    .where("expires_at", "<", now)
    .limit(limit)
    .execute();
  for (const u of uploads) await deleteUpload(db, u.merchant_id, u.upload_id);
  return uploads.length;
}

/** deleteUpload removes one upload with its stored parts (an expired one, or one whose file its request_id refused). */
export async function deleteUpload(db: BulkDb, merchantId: string, uploadId: string): Promise<void> {
  await deleteInBatches(
    () =>
      db
        .deleteFrom("bulk_upload_parts")
        .where("merchant_id", "=", merchantId)
        .where("upload_id", "=", uploadId)
        .limit(100)
        .executeTakeFirst(),
    100,
  );
  await db.deleteFrom("bulk_uploads").where("merchant_id", "=", merchantId).where("upload_id", "=", uploadId).execute();
}
