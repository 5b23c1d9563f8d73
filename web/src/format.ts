/** How values read on screen: money in the merchant's locale, times, counts and durations. */
import type { Timestamp } from "@bufbuild/protobuf/wkt";

export interface MoneyLike {
  currencyCode: string;
  minorUnits: bigint;
}

const digitsCache = new Map<string, number>();
/** currencyDigits is how many minor digits a currency has (2 for EUR, 0 for JPY). */
export function currencyDigits(code: string): number {
  let d = digitsCache.get(code);
  if (d === undefined) {
    try {
      d = new Intl.NumberFormat("en", { style: "currency", currency: code }).resolvedOptions().maximumFractionDigits ?? 2;
    } catch {
      d = 2;
    }
    digitsCache.set(code, d);
  }
  return d;
}

/** decimal writes minor units as a plain decimal string ("12.90"), exactly (no floating point). */
export function decimal(minor: bigint, code: string): string {
  const digits = currencyDigits(code);
  const negative = minor < 0n;
  const s = (negative ? -minor : minor).toString().padStart(digits + 1, "0");
  const out = digits === 0 ? s : `${s.slice(0, -digits)}.${s.slice(-digits)}`;
  return negative ? `-${out}` : out;
}

/** parseDecimal reads "12.9" as minor units of the currency; undefined when it is not a plain decimal with at most the currency's digits. */
export function parseDecimal(text: string, code: string): bigint | undefined {
  const digits = currencyDigits(code);
  const m = /^(\d+)(?:\.(\d*))?$/.exec(text.trim());
  if (!m) return undefined;
  const frac = m[2] ?? "";
  if (frac.length > digits) return undefined;
  return BigInt(m[1]!) * 10n ** BigInt(digits) + BigInt(frac.padEnd(digits, "0") || "0");
}

export function money(m: MoneyLike | undefined): string {
  if (!m?.currencyCode) return "—";
  const n = Number(decimal(m.minorUnits, m.currencyCode));
  try {
    return new Intl.NumberFormat(undefined, { style: "currency", currency: m.currencyCode }).format(n);
  } catch {
    return `${decimal(m.minorUnits, m.currencyCode)} ${m.currencyCode}`;
  }
}

export function time(t: Timestamp | undefined): string {
  if (!t) return "—";
  const d = new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6));
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function count(n: bigint | number): string {
  return Number(n).toLocaleString();
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  if (seconds < 60) return `${Math.max(1, Math.round(seconds))} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** enumName turns BULK_JOB_STATE_PARTIALLY_SUCCEEDED-style names (as the SDK's enums hold them) into "partially succeeded". */
export function words(name: string | undefined): string {
  return (name ?? "unknown").toLowerCase().replace(/_/g, " ");
}
