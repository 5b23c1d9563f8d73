import { createHash } from "node:crypto";
import { InvalidArgumentError } from "../errors.ts";

/**
 * Page tokens are opaque to clients (AIP-158): base64url JSON holding the
 * keyset position and a fingerprint of the query's filters, so a token used
 * with other filters is rejected instead of silently skipping rows.
 */
export function encodePageToken(position: unknown[], filters: unknown): string {
  return Buffer.from(JSON.stringify({ p: position, f: filterHash(filters) })).toString("base64url");
}

/** decodePageToken returns the keyset position, or undefined for the first page. */
export function decodePageToken(token: string, filters: unknown): unknown[] | undefined {
  if (token === "") return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as { p?: unknown; f?: unknown };
    if (Array.isArray(parsed.p) && parsed.f === filterHash(filters)) return parsed.p;
  } catch {
    // fall through to the error below
  }
  throw new InvalidArgumentError([{ field: "page_token", description: "is not a token returned by this query with these filters" }]);
}

/** pageSize applies AIP-158 defaults: 0 means fallback, above max is clamped, negative is an error. */
export function pageSize(requested: number, fallback: number, max: number): number {
  if (requested < 0) throw new InvalidArgumentError([{ field: "page_size", description: "must not be negative" }]);
  return requested === 0 ? fallback : Math.min(requested, max);
}

function filterHash(filters: unknown): string {
  return createHash("sha256")
    .update(JSON.stringify(filters ?? null))
    .digest("base64url")
    .slice(0, 12);
}
