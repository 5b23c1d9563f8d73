/**
 * Search rules: how SKU states are ordered, how a product's text is indexed
 * and how query text becomes an InnoDB boolean full-text query. Imports
 * neither proto nor kysely.
 */
import { createHash } from "node:crypto";

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

/**
 * Words of fewer letters, and these, are neither indexed nor looked for:
 * InnoDB's default stopwords (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD)
 * of 2 letters or more. Two-letter words count ("XL", "TV", "4K"), which
 * InnoDB's own parser dropped (innodb_ft_min_token_size 3) while it split
 * the text (search_products, before 2026-12-06).
 */
const MIN_WORD = 2;
const STOPWORDS = new Set(
  "about an are as at be by com de en for from how in is it la of on or that the this to was what when where who will with und www".split(
    " ",
  ),
);
const MAX_WORDS = 16;

/**
 * RUN is a run of letters of the scripts written without spaces between
 * words (Chinese, Japanese kana and kanji, Thai, Lao, Khmer, Burmese) and
 * of Korean, whose words are often one or two syllables: InnoDB's
 * full-text parser splits words at blanks and punctuation only, so it
 * indexes "日本製の抹茶" or "กาแฟสดคั่วเข้ม" as one word and holds no word
 * of under 3 letters, and "抹茶" (matcha) or "คั่ว" (roasted) could not be
 * found. Such runs are indexed as grams instead (runGrams). Marks count as
 * letters: Thai writes vowels and tones as combining marks.
 */
const RUN =
  /[[\p{L}\p{M}]&&[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}\p{scx=Hangul}\p{scx=Thai}\p{scx=Lao}\p{scx=Khmer}\p{scx=Myanmar}]]+/gv;
/**
 * WORD is a word as InnoDB's parser takes it: letters with their marks
 * (Devanagari and other Indic scripts write vowels as marks: "चाय" is one
 * word of 3, not two letters), digits and underscores.
 */
const WORD = /[\p{L}\p{M}\p{N}_]+/gu;
/** MAX_GRAMS bounds the grams one query asks for (a run of n letters asks for n - 1). */
const MAX_GRAMS = 32;

/**
 * SearchTerms is user text as the two full-text indexes of search_documents
 * take it: `words`, a boolean-mode query of its words (every word
 * required, as a prefix: `+mug*`), and `grams`, one of its grams (every
 * gram of the runs (RUN) required, whole: `+_抹茶`), each behind the
 * merchant's tag when one is given. Either may be absent.
 */
export interface SearchTerms {
  words?: string;
  grams?: string;
}

/**
 * searchTerms turns user text into the queries of both indexes. It keeps
 * only letters (with their marks), digits and underscores, so the text can
 * carry no operators; the text is compared as foldText leaves it.
 * Words the index does not hold (shorter than MIN_WORD, stopwords) are dropped:
 * required, they would match nothing. A run (RUN) becomes its grams: its
 * two-letter grams, or the letter itself when it is one letter long, so
 * "抹茶" finds "日本製の抹茶" and "茶" every product with that letter (a
 * run of grams is a phrase of them, as MySQL's ngram parser answers it).
 * tag is the merchant's (merchantTag), which every indexed word and gram
 * starts with. Returns undefined when nothing is left to look for.
 */
export function searchTerms(text: string, tag = ""): SearchTerms | undefined {
  const words = new Set<string>();
  const grams = new Set<string>();
  const folded = foldText(text);
  for (const run of folded.match(RUN) ?? []) for (const gram of queryGrams(normalizeRun(run))) grams.add(gram);
  for (const word of wordsOf(folded)) words.add(word);
  if (words.size === 0 && grams.size === 0) return undefined;
  const terms: SearchTerms = {};
  if (words.size > 0)
    terms.words = [...words]
      .slice(0, MAX_WORDS)
      .map((w) => {
        const spellings = dotlessSpellings(w);
        const key = (spelling: string) => `${tag}${indexedWord(spelling)}*`;
        return spellings.length === 1 ? `+${key(w)}` : `+(${spellings.map(key).join(" ")})`;
      })
      .join(" ");
  if (grams.size > 0)
    terms.grams = [...grams]
      .slice(0, MAX_GRAMS)
      .map((g) => `+${tag}${g}`)
      .join(" ");
  return terms;
}

/** MAX_DOTLESS is how many i and ı of one word are spelled every way (2^n spellings); past it, one way each. */
const MAX_DOTLESS = 2;

/**
 * dotlessSpellings is how a query word is looked for with Turkish's dotless
 * ı: the text's collation (utf8mb4_unicode_ci) holds ı and i apart, as they
 * are different letters, but "HALISI" is Turkish for "halısı" (carpet) and
 * lower-cases as "halisi" everywhere else, and Turkish is often typed without
 * its letters ("hali" for "halı"). A word with i or ı is looked for with
 * either letter at each of its first MAX_DOTLESS such places, and at the others
 * with all of them as i or all as ı; a word with neither is itself alone.
 */
export function dotlessSpellings(word: string): string[] {
  const letters = [...word];
  const places = letters.flatMap((letter, i) => (letter === "i" || letter === "ı" ? [i] : []));
  if (places.length === 0) return [word];
  const spellings = new Set<string>();
  const spelled = (choose: (place: number, n: number) => string) => {
    const out = [...letters];
    places.forEach((place, n) => {
      out[place] = choose(place, n);
    });
    return out.join("");
  };
  const exhaustive = places.slice(0, MAX_DOTLESS).length;
  for (const rest of ["i", "ı"])
    for (let mask = 0; mask < 1 << exhaustive; mask++)
      spellings.add(spelled((_, n) => (n < exhaustive ? ((mask >> n) & 1 ? "ı" : "i") : rest)));
  spellings.add(word);
  return [...spellings];
}

/**
 * skuPrefixes is what a query matches the start of SKUs with: a query of one
 * token (no blank) as written, in capitals and in small letters (SKUs are
 * compared byte for byte, and most are written in capitals: "tsh-red"
 * finds "TSH-RED-XL"). Empty for text with blanks or longer than maxSku
 * characters (the longest SKU the catalog holds: it starts none).
 */
export function skuPrefixes(text: string, maxSku: number): string[] {
  if (text === "" || /\s/u.test(text) || [...text].length > maxSku) return [];
  return [...new Set([text, text.toUpperCase(), text.toLowerCase()])];
}

/**
 * foldText is text as both sides compare it: NFKC (composed accents, and
 * ligatures, full-width and other compatibility forms as their letters),
 * small letters, Turkish İ as i (lower-cased, it is i and a combining dot),
 * and the letters of FOLDED as FOLDED spells them.
 */
function foldText(text: string): string {
  const folded = text
    .normalize("NFKC")
    .toLowerCase()
    .replace(/i\u0307/g, "i");
  return FOLDS.test(folded) ? folded.replace(FOLDS_ALL, (letter) => FOLDED[letter]!) : folded;
}

/**
 * FOLDED are letters the text's collation (utf8mb4_unicode_ci) compares
 * apart from how they are typed on keyboards without them, or as two
 * letters that LIKE does not take for them: Polish ł, Danish and Norwegian
 * ø and æ, Croatian and Vietnamese đ, Icelandic ð and þ, Maltese ħ, Sámi ŧ
 * (the collation holds these apart: "lodz" did not find "Łódź"), German ß
 * and French œ (the collation expands them to ss and oe, which InnoDB's
 * full-text search follows and LIKE does not: store.ts readText answers by
 * either, and both must agree). Accents it folds itself (é, å) are left to
 * it; ligatures and the like (ﬁ, ĳ, ǆ) NFKC spells out.
 */
const FOLDED: Readonly<Record<string, string>> = {
  ł: "l",
  ø: "o",
  đ: "d",
  ð: "d",
  æ: "ae",
  þ: "th",
  ħ: "h",
  ŧ: "t",
  ß: "ss",
  œ: "oe",
};
const FOLDS = new RegExp(`[${Object.keys(FOLDED).join("")}]`);
const FOLDS_ALL = new RegExp(FOLDS.source, "g");

/**
 * wordsOf is the words of folded text (foldText) that count (counts),
 * outside its runs (RUN), in order and repeated as they come: what a
 * product's text is indexed by and a query looks for. Runs are taken out
 * of the whole text at once, only from text that may have them (their
 * letters are word letters, so this leaves what taking them out of each
 * word would).
 */
function wordsOf(folded: string): string[] {
  return ((mayHaveRuns(folded) ? folded.replace(RUN, " ") : folded).match(WORD) ?? []).filter(counts);
}

/** counts tells whether a word outside runs is indexed and looked for: MIN_WORD letters or more, not a stopword. */
function counts(word: string): boolean {
  // Fewer than 2 × MIN_WORD UTF-16 units may be fewer than MIN_WORD letters (a letter past U+FFFF takes two).
  return (word.length >= 2 * MIN_WORD || (word.length >= MIN_WORD && [...word].length >= MIN_WORD)) && !STOPWORDS.has(word);
}

/**
 * TAG_LENGTH is the length of a merchant's tag (merchantTag), and
 * MAX_INDEXED_WORD how much of a word is indexed behind it:
 * innodb_ft_max_token_size (84) leaves out longer tokens altogether.
 */
const TAG_LENGTH = 8;
const MAX_INDEXED_WORD = 84 - TAG_LENGTH - 1;

/** indexedWord is the part of a word that is indexed (its first MAX_INDEXED_WORD letters): a longer query word is looked for by it. */
function indexedWord(word: string): string {
  if (word.length <= MAX_INDEXED_WORD) return word;
  return [...word].slice(0, MAX_INDEXED_WORD).join("");
}

/**
 * merchantTag is what every indexed word and gram of a merchant's products
 * starts with (documentTerms), and so every word of its queries: 8 hex
 * letters of the SHA-256 of its id. A full-text query reads the postings
 * of the words it names, and unscoped those are every merchant's: a
 * merchant with 3 products searching "light" waited 50–60 ms because
 * another one had 200,000 (npm start, 2026-12-06), and the wait grew with
 * the whole database. Tagged, it reads its own. Two merchants sharing a tag
 * share postings only: the statement keeps to the merchant's rows.
 */
export function merchantTag(merchantId: string): string {
  let tag = tags.get(merchantId);
  if (tag === undefined) {
    if (tags.size >= 10_000) tags.clear();
    tag = createHash("sha256").update(merchantId).digest("hex").slice(0, TAG_LENGTH);
    tags.set(merchantId, tag);
  }
  return tag;
}

/** The tags made lately (a projector's batch is mostly one merchant's): a hash is 0.7 µs, a lookup far less. */
const tags = new Map<string, string>();

/**
 * TERMS_FORMAT is the version of the rules documentTerms indexes by, stored
 * with each row (search_documents.terms_format): a release that changes them
 * counts up, and the reindex rewrites the rows made by older rules. 1: the
 * first (2026-12-06); 2: NFKC, and the letters of FOLDED folded (2026-12-06).
 */
export const TERMS_FORMAT = 2;

/** DocumentTerms is what search_documents indexes for a product: its words and its grams, each behind the merchant's tag, space-separated. */
export interface DocumentTerms {
  words: string;
  grams: string;
}

/**
 * documentTerms is the full text of a product as searchTerms looks for it:
 * each word outside runs once (folded as foldText does, MIN_WORD letters or
 * more, not a stopword, at most MAX_INDEXED_WORD letters), and the grams of its
 * runs (runGrams), all behind the merchant's tag. Words are split here, by
 * the rule a query's are (WORD), not by InnoDB's parser: each is one token
 * of letters, marks, digits and underscores, which that parser keeps whole.
 */
export function documentTerms(tag: string, text: string): DocumentTerms {
  const words = new Set<string>();
  for (const word of wordsOf(foldText(text))) words.add(indexedWord(word));
  let indexed = "";
  for (const word of words) indexed += indexed === "" ? tag + word : ` ${tag}${word}`;
  return {
    words: indexed,
    grams: mayHaveRuns(text)
      ? runGrams(text)
          .map((g) => `${tag}${g}`)
          .join(" ")
      : "",
  };
}

/**
 * mayHaveRuns tells whether text may have a letter of a run (RUN), far
 * more cheaply than RUN itself: each such letter is in one of MAYBE_RUN's
 * ranges (the scripts' blocks; astral ones by their high surrogates, and
 * the few letters and marks elsewhere that those scripts also use), which
 * a test holds to every code point. Most product text has none.
 */
export function mayHaveRuns(text: string): boolean {
  return MAYBE_RUN.test(text);
}

const MAYBE_RUN =
  // biome-ignore lint/suspicious/noMisleadingCharacterClass: code units on purpose (marks alone, high surrogates of astral letters)
  /[\u02bc\u0303\u0305\u0323\u0331\u0e00-\u0eff\u1000-\u11ff\u1780-\u17ff\u19e0-\u19ff\u2e80-\u9fff\ua960-\ua97f\ua9e0-\ua9ff\uaa60-\uaa7f\uac00-\ud7ff\uf900-\ufaff\uff00-\uffef\ud81b\ud82b\ud82c\ud840-\ud88f]/;

/**
 * runGrams is what search_documents indexes for a product's text: every
 * letter and every pair of neighbouring letters of its runs (RUN), as words of
 * 3 letters that the default parser keeps (innodb_ft_min_token_size is 3):
 * a pair behind one underscore, a letter behind two. Empty when the text has
 * no such letter. Runs are compared as normalizeRun leaves them, on both
 * sides.
 */
export function runGrams(text: string): string[] {
  const grams = new Set<string>();
  // No letter of these scripts has a case, and lower-casing makes none: the text is not lower-cased (a copy per projected row).
  for (const run of text.match(RUN) ?? []) {
    const letters = [...normalizeRun(run)];
    for (let i = 0; i < letters.length; i++) {
      grams.add(`__${letters[i]}`);
      if (i + 1 < letters.length) grams.add(`_${letters[i]}${letters[i + 1]}`);
    }
  }
  return [...grams];
}

/**
 * normalizeRun is how a run is compared: NFKC (half-width katakana as
 * full-width), then katakana as hiragana, as Japanese search does, so "すし"
 * finds "スシ" and the other way round.
 */
function normalizeRun(run: string): string {
  return run.normalize("NFKC").replace(KATAKANA, (k) => String.fromCharCode(k.charCodeAt(0) - 0x60));
}

/** KATAKANA are the katakana that have a hiragana 0x60 below them (ァ to ヶ). */
const KATAKANA = /[\u30a1-\u30f6]/g;

/** queryGrams is what a query's run must match: its pairs, or its one letter. */
function queryGrams(run: string): string[] {
  const letters = [...run];
  if (letters.length === 1) return [`__${letters[0]}`];
  return letters.slice(1).map((letter, i) => `_${letters[i]}${letter}`);
}
