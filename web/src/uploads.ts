/**
 * Resumable uploads that outlive the page. A dropped file is sent in 1 MiB
 * parts (CreateUpload, AppendUploadPart at its offset, CompleteUpload) and
 * recorded in IndexedDB with its upload id and the File itself, so after a
 * reload, a crash or a closed laptop the dashboard asks GetUpload how many
 * bytes the server holds and sends on from there: the bar continues where it
 * was instead of starting over. One tab sends a given upload (a Web Lock);
 * the record is removed once the job exists.
 *
 * The SDK's uploadBulkFile does the same within one call; the dashboard
 * drives the same calls itself only to keep the upload id across page loads.
 */
import { BulkFileFormat, ConflictPolicy, newRequestId, NotFoundError, PreconditionError } from "@stockroom/sdk/web";
import { client } from "./session.ts";

export const PART_SIZE = 1024 * 1024;

interface UploadRecord {
  requestId: string;
  uploadId: string;
  file: File;
  dryRun: boolean;
  skipConflicts: boolean;
  startedAt: number;
}

export interface UploadState {
  requestId: string;
  name: string;
  size: number;
  committed: number;
  dryRun: boolean;
  status: "sending" | "staging" | "done" | "failed";
  /** True when this upload continued after a page load (it had bytes on the server already). */
  resumed: boolean;
  error?: unknown;
  jobId?: string;
}

// --- IndexedDB, the few calls needed ---

const DB_NAME = "stockroom-dashboard";
const STORE = "uploads";

function openDb(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: "requestId" });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

async function tx<T>(mode: IDBTransactionMode, op: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
  const db = await openDb();
  try {
    return await new Promise<T>((resolve, reject) => {
      const req = op(db.transaction(STORE, mode).objectStore(STORE));
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
  } finally {
    db.close();
  }
}

const saveRecord = (r: UploadRecord) => tx("readwrite", (s) => s.put(r));
const deleteRecord = (id: string) => tx("readwrite", (s) => s.delete(id));
const allRecords = () => tx<UploadRecord[]>("readonly", (s) => s.getAll() as IDBRequest<UploadRecord[]>);

// --- the observable list of uploads this tab knows ---

let states: UploadState[] = [];
const listeners = new Set<() => void>();
let onJob: ((jobId: string) => void) | undefined;

export function subscribeUploads(l: () => void): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}
export const uploadsSnapshot = (): UploadState[] => states;

function update(requestId: string, patch: Partial<UploadState>): void {
  states = states.map((s) => (s.requestId === requestId ? { ...s, ...patch } : s));
  for (const l of listeners) l();
}

function add(state: UploadState): void {
  states = [state, ...states.filter((s) => s.requestId !== state.requestId)];
  for (const l of listeners) l();
}

export function dismissUpload(requestId: string): void {
  states = states.filter((s) => s.requestId !== requestId);
  for (const l of listeners) l();
}

/** whenJobCreated registers what to do once an upload became a job (refresh the list). */
export function whenJobCreated(f: (jobId: string) => void): void {
  onJob = f;
}

function formatOf(file: File): BulkFileFormat {
  const name = file.name.toLowerCase();
  if (name.endsWith(".csv") || file.type === "text/csv") return BulkFileFormat.CSV;
  if (/\.(jsonl|ndjson)$/.test(name)) return BulkFileFormat.JSON_LINES;
  throw new Error(`${file.name} is neither a CSV (.csv) nor a JSON Lines (.jsonl) file`);
}

/** startUpload creates the upload on the server, records it, and sends it. */
export async function startUpload(file: File, options: { dryRun: boolean; skipConflicts: boolean }): Promise<void> {
  const format = formatOf(file);
  if (file.size === 0) throw new Error(`${file.name} is empty`);
  const requestId = newRequestId();
  const { upload } = await client.bulk.createUpload({
    options: {
      format,
      requestId,
      dryRun: options.dryRun,
      conflictPolicy: options.skipConflicts ? ConflictPolicy.SKIP : ConflictPolicy.OVERWRITE,
      fileName: file.name.slice(0, 255),
    },
    expectedSize: BigInt(file.size),
  });
  const record: UploadRecord = { requestId, uploadId: upload!.id, file, ...options, startedAt: Date.now() };
  await saveRecord(record);
  add({ requestId, name: file.name, size: file.size, committed: 0, dryRun: options.dryRun, status: "sending", resumed: false });
  void locked(record, () => send(record, 0));
}

/** resumeUploads picks up every recorded upload no other tab is sending, from where the server has it. */
export async function resumeUploads(): Promise<void> {
  let records: UploadRecord[];
  try {
    records = await allRecords();
  } catch {
    return; // IndexedDB unavailable (private mode in some browsers): uploads just do not survive a reload
  }
  for (const record of records) {
    if (states.some((s) => s.requestId === record.requestId)) continue;
    void locked(record, () => resume(record));
  }
}

/** retryUpload is the "Resume" button of an upload that failed. */
export async function retryUpload(requestId: string): Promise<void> {
  const record = (await allRecords()).find((r) => r.requestId === requestId);
  if (!record) return;
  await locked(record, () => resume(record));
}

/** locked runs f while holding this upload's Web Lock; another tab holding it means that tab is sending. */
async function locked(record: UploadRecord, f: () => Promise<void>): Promise<void> {
  if (!("locks" in navigator)) return f();
  await navigator.locks.request(`stockroom-upload:${record.requestId}`, { ifAvailable: true }, async (lock) => {
    if (lock) await f();
  });
}

async function resume(record: UploadRecord): Promise<void> {
  const base = { requestId: record.requestId, name: record.file.name, size: record.file.size, dryRun: record.dryRun };
  try {
    const { upload } = await client.bulk.getUpload({ uploadId: record.uploadId });
    const committed = Number(upload!.committedSize);
    add({ ...base, committed, status: "sending", resumed: committed > 0 });
    if (upload!.jobId) return finish(record, upload!.jobId);
    await send(record, committed);
  } catch (error) {
    if (error instanceof NotFoundError) {
      await deleteRecord(record.requestId);
      add({
        ...base,
        committed: 0,
        status: "failed",
        resumed: false,
        error: new Error("This upload expired on the server. Drop the file again."),
      });
      return;
    }
    add({ ...base, committed: 0, status: "failed", resumed: false, error });
  }
}

async function send(record: UploadRecord, from: number): Promise<void> {
  const { file, uploadId, requestId } = record;
  try {
    let offset = from;
    while (offset < file.size) {
      const data = new Uint8Array(await file.slice(offset, offset + PART_SIZE).arrayBuffer());
      try {
        const res = await client.bulk.appendUploadPart({ uploadId, offset: BigInt(offset), data });
        offset = Number(res.committedSize);
      } catch (error) {
        // The server holds fewer bytes than we thought (another tab, a lost answer): it says where to go on.
        if (!(error instanceof PreconditionError && error.reason === "UPLOAD_GAP")) throw error;
        offset = Number(error.metadata["committed_size"]);
      }
      update(requestId, { committed: offset });
    }
    update(requestId, { status: "staging" });
    const { job } = await client.bulk.completeUpload({ uploadId, totalSize: BigInt(file.size) }, { timeoutMs: 0 });
    await finish(record, job!.id);
  } catch (error) {
    update(requestId, { status: "failed", error });
  }
}

async function finish(record: UploadRecord, jobId: string): Promise<void> {
  await deleteRecord(record.requestId);
  update(record.requestId, { status: "done", committed: record.file.size, jobId });
  onJob?.(jobId);
}
