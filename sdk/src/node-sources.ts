/** Node-only upload sources: a file path (or file: URL), and Node streams (fs.ReadStream names its file). */
import { createReadStream, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { Readable } from "node:stream";
import { byteSource, oneShot, type ByteSource, type WebUploadSource } from "./sources.ts";

/** UploadSource is what uploadBulkFile reads in Node: a path, a Node Readable, or anything the web entry takes. */
export type UploadSource = string | URL | Readable | WebUploadSource;

const READ_CHUNK = 256 * 1024;

export function nodeByteSource(source: UploadSource): ByteSource {
  if (typeof source === "string" || source instanceof URL) {
    const file = source instanceof URL ? fileURLToPath(source) : source;
    const stat = statSync(file);
    if (!stat.isFile()) throw new TypeError(`uploadBulkFile: ${file} is not a file`);
    return {
      size: stat.size,
      name: path.basename(file),
      type: undefined,
      replayable: true,
      read: (offset) => createReadStream(file, { start: offset, highWaterMark: READ_CHUNK }),
    };
  }
  if (isNodeReadable(source)) {
    const file = (source as { path?: unknown }).path;
    return oneShot(source, typeof file === "string" ? path.basename(file) : undefined);
  }
  return byteSource(source);
}

function isNodeReadable(source: unknown): source is Readable {
  return (
    typeof source === "object" &&
    source !== null &&
    typeof (source as Readable).pipe === "function" &&
    typeof (source as Readable).read === "function"
  );
}
