import { randomFillSync } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

let lastTime = -1;
let lastRandom: Uint8Array = new Uint8Array(10);

/**
 * newUlid returns a ULID: 48 bits of milliseconds and 80 random bits in
 * Crockford base32. Within one millisecond the random part is incremented,
 * so ids made by one process sort in creation order.
 */
export function newUlid(now: number = Date.now()): string {
  if (now <= lastTime) {
    increment(lastRandom);
  } else {
    lastTime = now;
    lastRandom = nextRandom();
  }
  return encodeTime(lastTime) + encodeRandom(lastRandom);
}

/**
 * Random bytes are drawn from the CSPRNG a pool at a time, as Node's
 * randomUUID does: one call into OpenSSL (and its getpid) per 409 ids
 * instead of one per id. At one id per millisecond, as a catalog write
 * makes them, that call was 3% of the write's CPU.
 */
const POOL = new Uint8Array(4096);
let poolAt = POOL.length;

function nextRandom(): Uint8Array {
  if (poolAt + 10 > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  poolAt += 10;
  // A copy: increment() changes the bytes, and the pool's are drawn once.
  return POOL.slice(poolAt - 10, poolAt);
}

/** ulidFloor returns the smallest ULID of millisecond ms: every id made at or after ms sorts at or above it. */
export function ulidFloor(ms: number): string {
  return encodeTime(ms) + "0".repeat(16);
}

/** ULID_PATTERN matches a canonical upper-case ULID. */
export const ULID_PATTERN = /^[0-7][0-9A-HJKMNP-TV-Z]{25}$/;

function encodeTime(ms: number): string {
  let out = "";
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[ms % 32] + out;
    ms = Math.floor(ms / 32);
  }
  return out;
}

function encodeRandom(bytes: Uint8Array): string {
  // 80 bits = 16 base32 characters, read 5 bits at a time.
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      out += ALPHABET[(buffer >> bits) & 31];
    }
    buffer &= (1 << bits) - 1;
  }
  return out;
}

function increment(bytes: Uint8Array): void {
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] === 255) {
      bytes[i] = 0;
    } else {
      bytes[i]! += 1;
      return;
    }
  }
}
