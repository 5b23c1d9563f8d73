import test from "ava";
import { csvCell, reportLines } from "../src/report.ts";

test("cells that spreadsheets would evaluate are defused, and CSV specials are quoted", (t) => {
  t.is(csvCell('=HYPERLINK("http://x")'), `"'=HYPERLINK(""http://x"")"`);
  for (const lead of ["+", "-", "@", "\t", "\r"]) t.true(csvCell(`${lead}1`).replace(/^"/, "").startsWith("'"), JSON.stringify(lead));
  t.is(csvCell("plain"), "plain");
  t.is(csvCell("a,b"), '"a,b"');
  t.is(csvCell("line\nbreak"), '"line\nbreak"');
});

test("one report row per error, and one for an item without errors", (t) => {
  const out = reportLines([
    { line_no: 2, sku: "A", outcome: "applied", errors: null },
    {
      line_no: 3,
      sku: "=B",
      outcome: "invalid",
      errors: JSON.stringify([
        { field: "price", code: "BAD_NUMBER", message: "not a number" },
        { field: "stock", code: "NEGATIVE_STOCK", message: "must not be negative" },
      ]),
    },
  ]);
  t.is(out, "2,A,APPLIED,,,\r\n3,'=B,INVALID,price,BAD_NUMBER,not a number\r\n3,'=B,INVALID,stock,NEGATIVE_STOCK,must not be negative\r\n");
});
