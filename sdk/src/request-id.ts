/** Idempotency keys (AIP-155) the SDK makes: random, and stable across retries of one call. */

const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
/** MAX_REQUEST_ID is the server's limit on request_id length. */
export const MAX_REQUEST_ID = 128;

/** newRequestId returns "sdk-" and 26 random base-32 digits (130 bits); crypto.getRandomValues works in insecure browser contexts too. */
export function newRequestId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(26));
  let id = "sdk-";
  for (const b of bytes) id += ALPHABET[b & 31];
  return id;
}

/**
 * attemptRequestId derives the request_id of upload attempt k from the
 * caller's id: attempt 0 uses it as is, attempt k appends ".k". Deriving
 * (rather than drawing a new id) keeps every attempt of one logical upload
 * findable from the caller's id, so a repeated call walks the same chain.
 * An id too long for a suffix is shortened with a hash of the whole id.
 */
export function attemptRequestId(requestId: string, attempt: number): string {
  if (attempt === 0) return requestId;
  const suffix = `.${attempt}`;
  if (requestId.length + suffix.length <= MAX_REQUEST_ID) return requestId + suffix;
  const hash = fnv1a(requestId);
  return `${requestId.slice(0, MAX_REQUEST_ID - suffix.length - hash.length - 1)}~${hash}${suffix}`;
}

/** fnv1a is the 32-bit FNV-1a hash of a string's UTF-16 code units, in hex. */
function fnv1a(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, "0");
}
