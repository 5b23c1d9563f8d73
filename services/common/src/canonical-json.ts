/**
 * canonicalJson serializes a JSON value the same way every time: object
 * keys sorted (by UTF-16 code units, as `<` compares strings), undefined
 * members left out, no whitespace. What gets hashed (the audit chain) must
 * not depend on key order or on the driver, and must never change: a sealed
 * row's hash is this text's. The sealer runs it on every audit row (three
 * JSON columns each), hence loops and concatenation rather than entries,
 * filter, map and join.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`cannot hash non-finite number ${value}`);
    return JSON.stringify(value) ?? "null";
  }
  if (Array.isArray(value)) {
    let out = "[";
    for (let i = 0; i < value.length; i++) out += (i === 0 ? "" : ",") + canonicalJson(value[i]);
    return `${out}]`;
  }
  const object = value as Record<string, unknown>;
  // sort() with no comparator orders strings by UTF-16 code units, as `<` does.
  const keys = Object.keys(object).sort();
  let out = "{";
  let first = true;
  for (const key of keys) {
    const member = object[key];
    if (member === undefined) continue;
    out += `${first ? "" : ","}${JSON.stringify(key)}:${canonicalJson(member)}`;
    first = false;
  }
  return `${out}}`;
}
