/**
 * Carry holds the bytes of the one record that a chunk boundary cut, so the
 * record can be read whole once its end arrives. It grows by doubling, so a
 * record fed a byte at a time still costs linear time.
 */
export class Carry {
  #bytes = Buffer.allocUnsafe(16 * 1024);
  length = 0;

  /** bytes holds the record in [0, length); valid until the next append. */
  get bytes(): Buffer {
    return this.#bytes;
  }

  append(src: Uint8Array, from: number, to: number): void {
    const need = this.length + (to - from);
    if (need > this.#bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.#bytes.length));
      this.#bytes.copy(grown, 0, 0, this.length);
      this.#bytes = grown;
    }
    this.#bytes.set(src.subarray(from, to), this.length);
    this.length = need;
  }

  /** last is the final byte held (the carry must not be empty). */
  last(): number {
    return this.#bytes[this.length - 1]!;
  }

  clear(): void {
    this.length = 0;
    // After a very long record, give the memory back.
    if (this.#bytes.length > 4 * 1024 * 1024) this.#bytes = Buffer.allocUnsafe(16 * 1024);
  }
}
