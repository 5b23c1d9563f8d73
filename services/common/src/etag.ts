/**
 * Etags (AIP-154) of versioned resources: "<id>.<version>", where id is the
 * resource's ULID, so an etag of a deleted and re-created resource never
 * matches. Products and orders use the same scheme.
 */
import type { FieldViolation } from "./errors.ts";

/** Versioned is what an etag encodes of a resource. */
export interface Versioned {
  id: string;
  version: number;
}

/** etagOf encodes a resource's identity and version: "<id>.<version>". */
export function etagOf(p: Versioned): string {
  return `${p.id}.${p.version}`;
}

const ETAG = /^([0-9A-HJKMNP-TV-Z]{26})\.([1-9][0-9]{0,15})$/;

/** parseEtag returns the id and version in an etag, or undefined if it is malformed. */
export function parseEtag(etag: string): { id: string; version: number } | undefined {
  const m = ETAG.exec(etag);
  return m ? { id: m[1]!, version: Number(m[2]) } : undefined;
}

/** checkEtag returns the etag a request asks to enforce, undefined if none was sent, and flags a malformed one under `field`. */
export function checkEtag(field: string, etag: string, violations: FieldViolation[]): string | undefined {
  if (etag === "") return undefined;
  if (!parseEtag(etag)) violations.push({ field, description: "is not an etag returned by this API" });
  return etag;
}

/** etagMatches tells whether an etag names exactly this version of the resource. */
export function etagMatches(etag: string, p: Versioned): boolean {
  return etag === etagOf(p);
}
