/** longerThan against `[...text].length > max`, what the field limits counted before, over generated and edge texts. */
import test from "ava";
import { longerThan } from "../src/text.ts";

const pieces = ["a", "é", "語", "🛒", "\u{1F469}\u200D\u{1F4BB}", "\uD800", "\uDC00", "\uDBFF\uDFFF", " ", "\u0000"];

test("longerThan counts code points as the string iterator does, lone surrogates included", (t) => {
  let s = 42;
  const next = () => {
    s = (s * 1_103_515_245 + 12_345) >>> 0;
    return s / 2 ** 32;
  };
  const texts = ["", "a", "\uD800\uDC00", "\uDC00\uD800", "x\uD800", "\uD800", "🛒".repeat(5), "é".repeat(300)];
  for (let i = 0; i < 500; i++)
    texts.push(Array.from({ length: Math.floor(next() * 40) }, () => pieces[Math.floor(next() * pieces.length)]).join(""));
  for (const text of texts) {
    const points = [...text].length;
    for (let max = 0; max <= text.length + 1; max++) t.is(longerThan(text, max), points > max, `${JSON.stringify(text)} / ${max}`);
  }
});
