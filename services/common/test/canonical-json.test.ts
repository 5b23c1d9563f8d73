import test from "ava";
import { canonicalJson } from "../src/canonical-json.ts";

/** reference is canonicalJson as first written (entries, filter, sort with <, map, join): the audit chain's hashes are its text. */
function reference(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new Error(`cannot hash non-finite number ${value}`);
    return JSON.stringify(value) ?? "null";
  }
  if (Array.isArray(value)) return `[${value.map(reference).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${reference(v)}`).join(",")}}`;
}

/** A small deterministic generator (mulberry32), so a failure reproduces. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KEY_CHARS = ["a", "B", "z", "_", "0", "é", "Z", "😀", "\u0000", '"', "\\", "\n", "ﬀ", " "];

function key(next: () => number): string {
  let out = "";
  const length = Math.floor(next() * 5);
  for (let i = 0; i < length; i++) out += KEY_CHARS[Math.floor(next() * KEY_CHARS.length)];
  return out;
}

function value(next: () => number, depth: number): unknown {
  const kind = Math.floor(next() * (depth > 3 ? 6 : 9));
  switch (kind) {
    case 0:
      return null;
    case 1:
      return next() < 0.5;
    case 2:
      return Math.round((next() - 0.5) * 1e6) / (next() < 0.5 ? 1 : 100);
    case 3:
      return key(next) + key(next);
    case 4:
      return undefined;
    case 5:
      return -0;
    case 6:
      return Array.from({ length: Math.floor(next() * 4) }, () => value(next, depth + 1));
    default: {
      const object: Record<string, unknown> = {};
      const n = Math.floor(next() * 6);
      for (let i = 0; i < n; i++) object[key(next)] = value(next, depth + 1);
      return object;
    }
  }
}

test("canonicalJson writes the reference's text for 5,000 generated values: nested, unordered and numeric-looking keys, undefined members and elements", (t) => {
  const next = random(20261204);
  for (let i = 0; i < 5_000; i++) {
    const v = value(next, 0);
    t.is(canonicalJson(v), reference(v));
  }
});

test("canonicalJson: fixed cases", (t) => {
  t.is(
    canonicalJson({ b: 1, a: [3, undefined, { d: undefined, c: "x" }], "10": true, "9": null }),
    '{"10":true,"9":null,"a":[3,null,{"c":"x"}],"b":1}',
  );
  t.is(canonicalJson({ é: 1, z: 2, Z: 3, "😀": 4, ﬀ: 5 }), reference({ é: 1, z: 2, Z: 3, "😀": 4, ﬀ: 5 }));
  t.is(canonicalJson([]), "[]");
  t.is(canonicalJson({}), "{}");
  t.is(canonicalJson(undefined), "null");
  t.is(canonicalJson(new Date(0)), "{}");
  t.throws(() => canonicalJson({ a: Number.NaN }), { message: /non-finite/ });
});
