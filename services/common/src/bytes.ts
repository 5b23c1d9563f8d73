/**
 * asBuffer views bytes as a Buffer without copying them: a Buffer as it is,
 * another Uint8Array (a decoded protobuf field, a protobuf writer's output)
 * as a Buffer over the same memory. mysql2 binds only a Buffer as binary.
 */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
