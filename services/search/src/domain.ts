/**
 * Search rules: how SKU states are ordered and how query text becomes an
 * InnoDB boolean full-text query. Imports neither proto nor kysely.
 */

/** Position orders a SKU's states: a recreated SKU has a newer product id (a ULID), then versions count up. */
export interface Position {
  productId: string;
  version: number;
}

/** isAtOrAfter tells whether held is the target state or a newer one; nothing held is older than anything. */
export function isAtOrAfter(held: Position | undefined, target: Position): boolean {
  if (!held) return false;
  if (held.productId !== target.productId) return held.productId > target.productId;
  return held.version >= target.version;
}

/** The InnoDB defaults: innodb_ft_min_token_size and INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD (3+ letters). */
const MIN_WORD = 3;
const STOPWORDS = new Set("about are com for from how that the this was what when where who will with und www".split(" "));
const MAX_WORDS = 16;

/**
 * booleanQuery turns user text into a boolean-mode query in which every word
 * is required and may be the start of a longer word (`+mug*`). It keeps only
 * letters, digits and underscores, so the text can carry no operators. Words
 * the index does not hold (shorter than 3, stopwords) are dropped: required,
 * they would match nothing. Returns undefined when no word is left.
 */
export function booleanQuery(text: string): string | undefined {
  const words = new Set<string>();
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) ?? []) {
    if ([...word].length >= MIN_WORD && !STOPWORDS.has(word)) words.add(word);
  }
  if (words.size === 0) return undefined;
  return [...words]
    .slice(0, MAX_WORDS)
    .map((w) => `+${w}*`)
    .join(" ");
}
