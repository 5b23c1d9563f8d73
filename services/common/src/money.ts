import type { FieldViolation } from "./errors.ts";

const knownCurrencies = new Set(Intl.supportedValuesOf("currency"));
const minorDigits = new Map<string, number>();

/** isKnownCurrency tells whether code is an ISO 4217 code this runtime knows. */
export function isKnownCurrency(code: string): boolean {
  return /^[A-Z]{3}$/.test(code) && knownCurrencies.has(code);
}

/** currencyDigits returns how many minor-unit digits a currency has (USD 2, JPY 0). */
export function currencyDigits(code: string): number {
  let digits = minorDigits.get(code);
  if (digits === undefined) {
    digits = new Intl.NumberFormat("en", { style: "currency", currency: code }).resolvedOptions().maximumFractionDigits ?? 2;
    minorDigits.set(code, digits);
  }
  return digits;
}

/** MAX_MINOR_UNITS bounds amounts so they stay exact in JavaScript numbers and SQL BIGINT. */
export const MAX_MINOR_UNITS = 10n ** 15n;

/** validateMoney checks a price-like amount and appends violations under field. */
export function validateMoney(
  field: string,
  money: { currencyCode: string; minorUnits: bigint } | undefined,
  violations: FieldViolation[],
): void {
  if (!money) {
    violations.push({ field, description: "is required" });
    return;
  }
  if (!isKnownCurrency(money.currencyCode)) {
    violations.push({
      field: `${field}.currency_code`,
      description: `"${money.currencyCode}" is not an ISO 4217 currency code`,
    });
  }
  if (money.minorUnits < 0n) {
    violations.push({ field: `${field}.minor_units`, description: "must not be negative" });
  } else if (money.minorUnits > MAX_MINOR_UNITS) {
    violations.push({ field: `${field}.minor_units`, description: `must be at most ${MAX_MINOR_UNITS}` });
  }
}
