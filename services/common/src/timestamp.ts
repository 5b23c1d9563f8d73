import type { FieldViolation } from "./errors.ts";

/** The range google.protobuf.Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z. */
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;

/**
 * checkTimestamp flags a google.protobuf.Timestamp outside its documented
 * range (seconds from year 1 to 9999, nanos 0 to 999,999,999) under `field`:
 * the binary protocols accept any integers, and such a value would otherwise
 * become an Invalid Date or a silently wrong filter.
 */
export function checkTimestamp(field: string, ts: { seconds: bigint; nanos: number }, violations: FieldViolation[]): void {
  if (ts.seconds < MIN_SECONDS || ts.seconds > MAX_SECONDS || ts.nanos < 0 || ts.nanos > 999_999_999) {
    violations.push({ field, description: "is not a valid timestamp (0001-01-01 to 9999-12-31, nanos 0 to 999,999,999)" });
  }
}
