/**
 * Upload sources that work everywhere (browsers and Node): a Blob or File,
 * a Uint8Array, a web ReadableStream or any AsyncIterable of bytes. The Node
 * entry adds file paths and Node streams (node-sources.ts).
 */

/** WebUploadSource is what uploadBulkFile reads in any runtime. */
export type WebUploadSource = Blob | Uint8Array | ReadableStream<Uint8Array> | AsyncIterable<Uint8Array>;

/** ByteSource is an upload source made uniform. */
export interface ByteSource {
  /** The total size in bytes, if known before reading. */
  size: number | undefined;
  /** A file name, for the format and the job's file_name. */
  name: string | undefined;
  /** A MIME type, for the format. */
  type: string | undefined;
  /** replayable sources can be read again from any offset; one-shot sources only once, from 0. */
  replayable: boolean;
  /** read yields the bytes from offset on. */
  read(offset: number): AsyncIterable<Uint8Array>;
}

const SLICE = 256 * 1024;

/** byteSource makes a uniform source of a web-capable one. */
export function byteSource(source: WebUploadSource): ByteSource {
  if (source instanceof Uint8Array) {
    return {
      size: source.length,
      name: undefined,
      type: undefined,
      replayable: true,
      async *read(offset) {
        for (let at = offset; at < source.length; at += SLICE) yield source.subarray(at, at + SLICE);
      },
    };
  }
  if (typeof Blob !== "undefined" && source instanceof Blob) {
    return {
      size: source.size,
      name: typeof File !== "undefined" && source instanceof File ? source.name : undefined,
      type: source.type || undefined,
      replayable: true,
      read: (offset) => readableBytes(source.slice(offset).stream()),
    };
  }
  if (typeof ReadableStream !== "undefined" && source instanceof ReadableStream) {
    return oneShot(readableBytes(source as ReadableStream<Uint8Array>));
  }
  if (source !== null && typeof source === "object" && Symbol.asyncIterator in source) {
    return oneShot(source);
  }
  throw new TypeError("uploadBulkFile: the source must be a Blob, a Uint8Array, a ReadableStream or an AsyncIterable of Uint8Array");
}

/** oneShot wraps a stream that can be read once. */
export function oneShot(iterable: AsyncIterable<Uint8Array>, name?: string): ByteSource {
  let used = false;
  return {
    size: undefined,
    name,
    type: undefined,
    replayable: false,
    read(offset) {
      if (used || offset !== 0)
        throw new Error("uploadBulkFile: a stream source can be read only once; pass a file or a Blob to allow a restart");
      used = true;
      return bytesOf(iterable);
    },
  };
}

/** bytesOf checks that every chunk is bytes (a Node stream with an encoding set yields strings). */
async function* bytesOf(iterable: AsyncIterable<unknown>): AsyncGenerator<Uint8Array> {
  for await (const chunk of iterable) {
    if (!(chunk instanceof Uint8Array)) throw new TypeError("uploadBulkFile: the source yielded something other than a Uint8Array");
    yield chunk;
  }
}

/** readableBytes iterates a web ReadableStream (not every browser makes them async iterable), cancelling it when abandoned. */
async function* readableBytes(stream: ReadableStream<Uint8Array>): AsyncGenerator<Uint8Array> {
  const reader = stream.getReader();
  let done = false;
  try {
    for (;;) {
      const r = await reader.read();
      if (r.done) {
        done = true;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

/** Part is a run of bytes at an offset of the file. */
export interface Part {
  offset: number;
  data: Uint8Array;
}

/** parts cuts a source into parts of exactly size bytes (the last may be shorter), starting at offset. */
export async function* parts(source: ByteSource, offset: number, size: number): AsyncGenerator<Part> {
  let buffer = new Uint8Array(size);
  let filled = 0;
  let at = offset;
  for await (const chunk of source.read(offset)) {
    for (let used = 0; used < chunk.length; ) {
      const n = Math.min(size - filled, chunk.length - used);
      buffer.set(chunk.subarray(used, used + n), filled);
      filled += n;
      used += n;
      if (filled === size) {
        yield { offset: at, data: buffer };
        at += size;
        buffer = new Uint8Array(size);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield { offset: at, data: buffer.subarray(0, filled) };
}

/** pieces splits chunks larger than max, for the 4 MiB message limit. */
export async function* pieces(chunks: AsyncIterable<Uint8Array>, max: number): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) {
    for (let at = 0; at < chunk.length; at += max) yield at === 0 && chunk.length <= max ? chunk : chunk.subarray(at, at + max);
  }
}
