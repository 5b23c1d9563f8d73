/**
 * longerThan tells whether text has more than max characters, counted as
 * code points (what `[...text].length` counts: a surrogate pair is one, a
 * lone surrogate is one), without splitting the text into an array. A text
 * of at most max UTF-16 units cannot be longer, so the usual case is one
 * comparison; limits are checked on every field of every bulk item and call.
 */
export function longerThan(text: string, max: number): boolean {
  const n = text.length;
  if (n <= max) return false;
  let points = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    if (++points > max) return true;
  }
  return false;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this pattern finds
const CONTROL = /[\u0000-\u001f\u007f]/;

/** hasControlCharacters tells whether text holds a C0 control character or DEL (a SKU, a brand, a key's label may not). */
export function hasControlCharacters(text: string): boolean {
  return CONTROL.test(text);
}
